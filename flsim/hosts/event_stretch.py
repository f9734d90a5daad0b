"""One call per actor per stretch: the parts of one machine synchronise through shared memory
(docs/parallel_events.md, "One call per stretch").

Between two evaluation times the driver used to submit one or two Ray calls per actor and
level, and a partner's exports reached the next call through the driver: about 1 ms of
Ray's own work per call, two calls per level. When every part runs on one machine and hands
states over through mailboxes (:mod:`flsim.hosts.event_mailbox`), the driver instead plans
the whole stretch (:func:`plan_stretch`) and each actor walks its own levels in one call,
synchronising with its partners through a small *control area*: a shared file of monotone
counters, two per part, and an abort flag.

* ``written[p] = g + 1`` once part p has copied its exports of level g into its mailbox;
  a part that imports at level g from p first waits for ``written[p] ≥ g``.
* ``read[p] = g + 1`` once part p has copied its imports of level g out of its partners'
  mailboxes; a part that would overwrite a slot first waits until every reader of the
  slot's content has published that it read it (the plan lists those conditions).
* The driver sets ``abort`` when any part's call fails or its actor is lost, so the
  partners stop waiting at once instead of at ``backend.timeout_s``.

A counter is written only after the copy it announces is complete; x86 keeps stores in
program order (and loads too), so a partner that sees the counter sees the rows. Other
architectures do not promise that, so :func:`ordered_stores` keeps them on the per-level
call graph. Levels are numbered across the stretches of a run (``base``), so the counters
only ever grow and need no reset between stretches.

The events each part applies, their order and the slots are exactly those of the per-level
calls: the parts only wait for each other differently, so the result stays bit-identical.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import platform
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from flsim.hosts import event_mailbox
from flsim.hosts.event_mailbox import SlotPlanner
from flsim.hosts.event_partition import Event, LevelCall, LevelPlan

#: int64 counters per part (one cache line, so two parts never write the same line).
LINE = 8
WRITTEN, READ = 0, 1

#: Shortest and longest pause between two looks at a counter: short enough that a partner
#: ready a moment later costs little, long enough that a waiting actor leaves the core to
#: the partner it waits for (two cores, shared with the driver and other processes).
FIRST_PAUSE, LONGEST_PAUSE = 2e-5, 1e-3


class StretchAborted(RuntimeError):
    """The driver stopped the stretch: a partner's call failed or its actor was lost."""


class StretchTimeout(TimeoutError):
    """A partner published nothing new within ``backend.timeout_s``."""


def ordered_stores() -> bool:
    """Whether this machine keeps stores (and loads) in program order for other processes."""
    return platform.machine().lower() in {"x86_64", "amd64", "i386", "i686"}


def create_control(parts: int) -> str | None:
    """A zeroed control file for ``parts`` parts in the mailboxes' directory; ``None`` where
    it cannot be made (the stretch then runs as per-level calls)."""
    shm = event_mailbox.SHM
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        return None
    path = str(shm / f"flsim-control-{uuid.uuid4().hex}")
    try:
        with open(path, "wb") as handle:
            os.posix_fallocate(handle.fileno(), 0, 8 * LINE * (parts + 1))
    except OSError:
        event_mailbox.remove_mailboxes([path])
        return None
    return path


class Control:
    """A mapping of the control file: line 0 holds the abort flag, line p + 1 part p's counters."""

    def __init__(self, path: str, timeout_s: float) -> None:
        with open(path, "r+b") as handle:
            self.map = mmap.mmap(handle.fileno(), 0)
        self.counters = np.frombuffer(self.map, dtype=np.int64)
        self.timeout_s = timeout_s
        #: Seconds spent waiting for partners (the benchmark's accounting).
        self.waited = 0.0

    def publish(self, kind: int, part: int, value: int) -> None:
        self.counters[LINE * (part + 1) + kind] = value

    def value(self, kind: int, part: int) -> int:
        return int(self.counters[LINE * (part + 1) + kind])

    def progress(self) -> int:
        """The sum of every counter: it grows whenever any part gets on."""
        return int(self.counters[LINE:].sum())

    def abort(self) -> None:
        self.counters[0] = 1

    def wait(self, kind: int, conditions: Sequence[tuple[int, int]]) -> None:
        """Until ``counter[kind][part] ≥ value`` for every ``(part, value)``; polls with growing
        pauses, raises :class:`StretchAborted` once the driver aborts and
        :class:`StretchTimeout` after ``timeout_s`` without the counter reaching the value."""
        counters = self.counters
        for part, value in conditions:
            index = LINE * (part + 1) + kind
            if counters[index] >= value:
                continue
            start = time.perf_counter()
            pause = FIRST_PAUSE
            while counters[index] < value:
                if counters[0]:
                    raise StretchAborted("stopped: a partner part failed")
                waited = time.perf_counter() - start
                if waited > self.timeout_s:
                    what = "exports" if kind == WRITTEN else "imports"
                    raise StretchTimeout(
                        f"part {part} did not publish its {what} of level {value - 1} "
                        f"within backend.timeout_s={self.timeout_s:g}s"
                    )
                time.sleep(pause)
                pause = min(2 * pause, LONGEST_PAUSE)
            self.waited += time.perf_counter() - start

    def close(self) -> None:
        self.counters = np.zeros(0, dtype=np.int64)
        with contextlib.suppress(BufferError):
            self.map.close()


@dataclass
class StretchStep:
    """One level of one part's stretch: the level's first call (with the mailbox slots of its
    exports), where each imported node state lies, the conditions to wait for, and the
    level's later events.

    ``after``: ``(partner, value)``: wait for ``written[partner] ≥ value`` before the imports;
    ``free``: ``(reader, value)``: wait for ``read[reader] ≥ value`` before the exports
    overwrite their slots.
    """

    level: int
    call: LevelCall
    sources: dict[int, tuple[int, int]] = field(default_factory=dict)
    after: list[tuple[int, int]] = field(default_factory=list)
    free: list[tuple[int, int]] = field(default_factory=list)
    later: list[Event] = field(default_factory=list)


def plan_stretch(plan: LevelPlan, planner: SlotPlanner, base: int) -> list[list[StretchStep]]:
    """Each part's steps for ``plan``, its levels numbered from ``base``.

    The slots come from ``planner`` as for per-level calls; a slot's readers are recorded as
    ``(reader, level + 1)`` read conditions instead of calls, and a step that overwrites a
    slot waits for them. The caller checks ``planner.fits`` first.
    """
    parts = len(plan.calls[0]) if plan.calls else 0
    steps: list[list[StretchStep]] = [[] for _ in range(parts)]
    addresses: list[dict[int, tuple[int, int]]] = [{} for _ in range(parts)]
    for offset, (calls, senders) in enumerate(zip(plan.calls, plan.senders, strict=True)):
        level = base + offset
        exported: list[dict[int, tuple[int, int]]] = [{} for _ in range(parts)]
        written: list[list[int]] = []
        for p, call in enumerate(calls):
            slots, readers = planner.assign(p, len(call.exports))
            written.append(slots)
            exported[p] = {node: (p, slot) for node, slot in zip(call.exports, slots, strict=True)}
            if not call:
                continue
            head = replace(call, later=[], slots=slots, fences=0)
            step = StretchStep(level, head, later=call.later, free=_strongest(readers))
            step.after = [(q, level) for q in senders[p]]
            touched = {node for _, i, j in call.imports for node in (i, j)}
            step.sources = {n: addresses[q][n] for q in senders[p] for n in touched & addresses[q].keys()}
            steps[p].append(step)
            for q in senders[p]:
                planner.read_by(q, (p, level + 1))
        planner.written(written)
        addresses = exported
    return steps


def _strongest(conditions: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Per part, only the highest value waited for (counters only grow)."""
    best: dict[int, int] = {}
    for part, value in conditions:
        best[part] = max(best.get(part, 0), value)
    return sorted(best.items())
