"""flsim: a deterministic discrete-event simulator for federated and decentralized learning."""

__version__ = "0.1.0"

from flsim.api import RunResult, load_runs, resume, run

__all__ = ["RunResult", "__version__", "load_runs", "resume", "run"]
