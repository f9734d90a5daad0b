"""Keep the objects that exist before a run out of the garbage collector's full passes.

A run allocates container objects every round (replies, contexts, cached client shards),
and CPython's cyclic collector answers with a full pass over *every* tracked object now and
then: the imports alone (torch, pydantic, networkx) leave ~200,000 of them, so one pass
costs ~0.1 s. In a 10⁶-client population nearly every sampled client is new, so more
objects survive each round and full passes come often enough to dominate the time per
round (issue 17 measured one 118 ms pass in 20 rounds of 12 ms). ``gc.freeze`` moves the
objects that exist when the run starts to a generation the collector skips; ``gc.unfreeze``
hands them back when the run ends, so nothing they hold is leaked by a long-lived process
(a sweep, a test session). Garbage still gets collected; only its search gets shorter.
Collection never changes a result, so this changes time, not metrics.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0


def freeze_heap() -> None:
    """Freeze the heap as it stands, unless an enclosing run already did (re-entrant: nested
    runs, or several runs on threads, freeze once and unfreeze when the last one ends)."""
    global _depth
    with _lock:
        if _depth == 0:
            gc.freeze()
        _depth += 1


def unfreeze_heap() -> None:
    """Undo one :func:`freeze_heap`; the last one hands the objects back to the collector."""
    global _depth
    with _lock:
        _depth -= 1
        if _depth == 0:
            gc.unfreeze()


@contextmanager
def frozen_heap() -> Iterator[None]:
    """The heap frozen for the duration of a run (see :func:`freeze_heap`)."""
    freeze_heap()
    try:
        yield
    finally:
        unfreeze_heap()
