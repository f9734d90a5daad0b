"""The event heap: every event ordered by ``(virtual_time, sequence)``.

The sequence number is assigned at push time, so two events at the same virtual time pop in
the order they were scheduled: ties break deterministically, never by object identity.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any


@dataclass(order=True, frozen=True)
class Event:
    time: float
    sequence: int
    kind: str = field(compare=False)
    node: int = field(compare=False, default=-1)
    payload: Any = field(compare=False, default=None)


class EventQueue:
    def __init__(self) -> None:
        self._heap: list[Event] = []
        self._sequence = 0
        self.popped = 0

    def push(self, time: float, kind: str, node: int = -1, payload: Any = None) -> Event:
        event = Event(time, self._sequence, kind, node, payload)
        self._sequence += 1
        heapq.heappush(self._heap, event)
        return event

    def pop(self) -> Event:
        self.popped += 1
        return heapq.heappop(self._heap)

    def peek(self) -> Event:
        return self._heap[0]

    def pending(self) -> list[Event]:
        """The events not yet popped, in pop order (for checkpoints; the heap is unchanged)."""
        return sorted(self._heap)

    def __len__(self) -> int:
        return len(self._heap)
