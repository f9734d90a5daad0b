"""Live local dashboard over a results directory (``flsim dashboard RESULTS_DIR``).

The server (:mod:`flsim.dashboard.server`) needs ``aiohttp`` (the ``dashboard`` extra); this
package imports it lazily so that ``import flsim`` and the static report never need it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["background_server", "make_app", "serve"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from flsim.dashboard import server

        return getattr(server, name)
    raise AttributeError(name)
