"""Node states handed between the parts of one machine through shared memory
(docs/parallel_events.md, "Handing states over").

Through Ray's object store, every exported state is a new object: the exporting actor
allocates it, copies it in and registers it, and the importing one maps and copies it out;
for a 1.5 MB model that cost several milliseconds of the exporter's time after each call,
more than the events the level ran. When every part runs on one machine, each part instead
gets a *mailbox*: a file in ``/dev/shm`` divided into slots of one node's exchanged rows.
A part writes an export into a slot of its own mailbox and returns only ``(part, slot)``;
the partner copies the rows out of the shared mapping. The bytes are copied as they are, so
the hand-over is exact.

The driver plans the slots (:class:`SlotPlanner`): a slot is written again only by a call
that waits, through Ray's dependencies, for every call that read its previous content.
Files are unlinked as soon as every part has mapped them, so nothing outlives the processes.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Where mailboxes live: a memory file system on Linux.
SHM = Path("/dev/shm")

#: Slots per mailbox: how many exports a part may have in flight before a fence waits.
SLOTS = 16

#: At most this many bytes per mailbox; larger states get fewer slots (at least two).
BUDGET = 256 * 2**20


@dataclass(frozen=True)
class SlotLayout:
    """Where each exchanged field's row lies in a slot (bytes), and a slot's size."""

    fields: tuple[tuple[str, tuple[int, ...], str, int], ...]
    nbytes: int

    @classmethod
    def of(cls, rows: dict[str, np.ndarray]) -> SlotLayout:
        fields, offset = [], 0
        for name, row in rows.items():
            fields.append((name, tuple(row.shape), row.dtype.str, offset))
            offset += -(-row.nbytes // 64) * 64  # cache-line aligned
        return cls(tuple(fields), max(offset, 64))

    def slots(self) -> int:
        return max(2, min(SLOTS, BUDGET // self.nbytes))


def create_mailboxes(parts: int, layout: SlotLayout) -> list[str] | None:
    """One sized, zeroed file per part in ``/dev/shm``; ``None`` where there is none or it
    has no room for them (the states then travel through the object store)."""
    if not SHM.is_dir() or not os.access(SHM, os.W_OK):
        return None
    paths = [str(SHM / f"flsim-{uuid.uuid4().hex}-{p}") for p in range(parts)]
    try:
        for path in paths:
            with open(path, "wb") as handle:
                # Reserve the pages now: a sparse file on a full /dev/shm (a container's
                # 64 MB) would kill the actor with SIGBUS at its first write instead.
                os.posix_fallocate(handle.fileno(), 0, layout.nbytes * layout.slots())
    except OSError:
        remove_mailboxes(paths)
        return None
    return paths


def remove_mailboxes(paths: Sequence[str]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


class Mailboxes:
    """A part's mappings of every part's mailbox: it writes its own, reads its partners'."""

    def __init__(self, index: int, paths: Sequence[str], layout: SlotLayout) -> None:
        self.index, self.layout = index, layout
        self.maps: list[mmap.mmap] = []
        for path in paths:
            with open(path, "r+b") as handle:
                self.maps.append(mmap.mmap(handle.fileno(), 0))
        self.buffers = [np.frombuffer(m, dtype=np.uint8) for m in self.maps]

    def _field(self, part: int, slot: int, name: str, shape: tuple, dtype: str, offset: int) -> np.ndarray:
        start = slot * self.layout.nbytes + offset
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        return self.buffers[part][start : start + size].view(dtype).reshape(shape)

    def write(self, slot: int, rows: dict[str, np.ndarray]) -> tuple[int, int]:
        """Copy one node's rows into ``slot`` of this part's mailbox; returns its address."""
        for name, shape, dtype, offset in self.layout.fields:
            self._field(self.index, slot, name, shape, dtype, offset)[...] = rows[name]
        return self.index, slot

    def read(self, address: tuple[int, int]) -> dict[str, np.ndarray]:
        """Views of the rows at ``address``: valid until the slot is planned again."""
        part, slot = address
        return {
            name: self._field(part, slot, name, shape, dtype, offset)
            for name, shape, dtype, offset in self.layout.fields
        }

    def close(self) -> None:
        """Unmap now, unless a view of a slot is still alive (then when it is collected)."""
        self.buffers = []
        for mapping in self.maps:
            with contextlib.suppress(BufferError):
                mapping.close()
        self.maps = []


class SlotPlanner:
    """The driver's book of every part's slots: which to write next and whom to wait for.

    Exports written at one level are read by the partners' first calls of the next level;
    those calls become the slot's readers. A call that writes a slot again first waits for
    them (its *fences*), so a partner never reads a slot that was overwritten. Slots whose
    readers are not submitted yet (the previous level's exports) are never handed out. In a
    stretch run as one call per part, a reader is a ``(part, value)`` condition on that
    part's read counter instead of a call (:func:`~flsim.hosts.event_stretch.plan_stretch`).
    """

    def __init__(self, parts: int, slots: int) -> None:
        self.slots = slots
        self.next = [0] * parts
        self.readers: list[list[list[Any]]] = [[[] for _ in range(slots)] for _ in range(parts)]
        self.unread: list[list[int]] = [[] for _ in range(parts)]

    def fits(self, counts: Sequence[int]) -> bool:
        """Whether a level whose parts export ``counts`` states can always find free slots."""
        return all(2 * count <= self.slots for count in counts)

    def assign(self, part: int, count: int) -> tuple[list[int], list[Any]]:
        """Slots for ``count`` exports of ``part`` and the calls to wait for first."""
        chosen: list[int] = []
        fences: list[Any] = []
        while len(chosen) < count:
            slot = self.next[part]
            self.next[part] = (slot + 1) % self.slots
            if slot in self.unread[part]:
                continue
            chosen.append(slot)
            fences += self.readers[part][slot]
            self.readers[part][slot] = []
        return chosen, fences

    def read_by(self, sender: int, call: Any) -> None:
        """``call`` reads what ``sender`` exported at the level before."""
        for slot in self.unread[sender]:
            self.readers[sender][slot].append(call)

    def written(self, slots: Sequence[Sequence[int]]) -> None:
        """Each part's slots written at this level: the next level's calls read them."""
        self.unread = [list(chosen) for chosen in slots]

    def settled(self) -> None:
        """Every call submitted so far has finished (a barrier): no fence is needed."""
        self.readers = [[[] for _ in range(self.slots)] for _ in self.readers]
        self.unread = [[] for _ in self.unread]
