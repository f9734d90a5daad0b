"""Where persistent per-client state lives between rounds (control variates, duals, errors).

The state of a client stays with the worker that hosts it (DESIGN.md §9: no server-side
N × d tensors). This in-memory store is the default; a store that spills to disk can
replace it without the algorithms noticing, because they only ever see one client's dict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from torch import Tensor

Tensors = dict[str, Tensor]


class ClientStateStore:
    def __init__(self, initial: Callable[[int], Tensors]) -> None:
        self._initial = initial
        self._states: dict[int, Tensors] = {}

    def get(self, client: int) -> Tensors:
        state = self._states.get(client)
        return self._initial(client) if state is None else state

    def put(self, client: int, state: Tensors) -> None:
        if state:
            self._states[client] = state

    def items(self) -> Iterator[tuple[int, Tensors]]:
        yield from sorted(self._states.items())

    def load(self, states: dict[int, Tensors]) -> None:
        self._states = dict(states)
