"""flsim: a deterministic discrete-event simulator for federated and decentralized learning.

The public API (:func:`run`, :func:`resume`, :func:`load_runs`, :class:`RunResult`) lives in
:mod:`flsim.api`, the top layer. It is re-exported here on first use (PEP 562), so that
importing a low module such as :mod:`flsim.rng` or :mod:`flsim.config` does not load the
API, the engine or the CLI above it.
"""

from __future__ import annotations

from flsim.lazy import lazy_exports

__version__ = "0.1.0"

__all__ = ["RunResult", "__version__", "load_runs", "resume", "run"]

__getattr__ = lazy_exports("flsim", dict.fromkeys(["RunResult", "load_runs", "resume", "run"], "api"))
