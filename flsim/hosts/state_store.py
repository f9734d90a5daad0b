"""Where persistent per-client state lives between rounds (control variates, duals, errors).

The state of a client stays with the worker that hosts it (docs/architecture.md §9: no server-side
N × d tensors). Algorithms only ever see one client's dict, so how the store keeps the others
is invisible to them:

* With no memory budget (the default) every state stays in memory.
* With ``memory_budget_bytes`` (scenario key ``backend.state_memory_mb``, per host), the store
  keeps at most that many bytes of states *hot*, in least-recently-used order, and spills
  the rest to disk. 10,000 SCAFFOLD clients of a 100k-parameter model are 4 GB of control
  variates; with a budget only the budget stays resident (``benchmarks/state_store.py``).

Spilled states are written once per ``put`` to a fresh file (raw tensor bytes, the layout
kept in memory; states that hold something other than tensors fall back to ``torch.save``).
A file is never rewritten in place, so an exported snapshot can map the files of the moment
lazily (``torch.from_file``, copy-on-write) and stay valid while the live store moves on: a
checkpoint of a spilled store costs no resident memory until it is written or restored.
Reading a cold state returns a private copy; the states handed out are never aliased with
what the store keeps, which is why algorithms must (and do) return new state tensors.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

Tensors = dict[str, Tensor]

#: Byte alignment of each tensor inside a spill file.
_ALIGN = 16


def state_bytes(state: dict[str, Any]) -> int:
    """Resident size of a state: the bytes of its tensors (other values count as 0)."""
    return sum(v.numel() * v.element_size() for v in state.values() if isinstance(v, Tensor))


@dataclass(frozen=True)
class _Spilled:
    """Where a cold state lives: its file and, for raw files, each tensor's layout."""

    path: Path
    #: (key, dtype, shape, byte offset, byte length) per tensor; ``None`` means torch.save.
    layout: tuple[tuple[str, torch.dtype, tuple[int, ...], int, int], ...] | None
    nbytes: int


class ClientStateStore:
    """Per-client state dicts with an optional hot-memory budget and spill to disk.

    ``initial(client)`` gives a client's state before its first ``put``; it is not stored
    (SCAFFOLD's c_i = 0 costs nothing for clients never sampled).
    """

    def __init__(
        self,
        initial: Callable[[int], Tensors],
        memory_budget_bytes: int | None = None,
        spill_dir: str | Path | None = None,
    ) -> None:
        if memory_budget_bytes is not None and memory_budget_bytes < 0:
            raise ValueError("memory_budget_bytes must be >= 0")
        self._initial = initial
        self._budget = memory_budget_bytes
        self._hot: OrderedDict[int, Tensors] = OrderedDict()
        self._hot_bytes = 0
        self._cold: dict[int, _Spilled] = {}
        self._parent = Path(spill_dir) if spill_dir is not None else None
        self._dir: Path | None = None
        self._finalizer: weakref.finalize | None = None
        self._versions = itertools.count()
        self.spills = 0
        self.loads = 0

    # -- the algorithm-facing interface -----------------------------------------------------
    def get(self, client: int) -> Tensors:
        hot = self._hot.get(client)
        if hot is not None:
            self._hot.move_to_end(client)
            return hot
        cold = self._cold.get(client)
        if cold is None:
            return self._initial(client)
        # A cold read is not promoted: the host puts the client's *new* state right after.
        self.loads += 1
        return self._read(cold, private=True)

    def put(self, client: int, state: Tensors) -> None:
        if not state:
            return
        self._discard(client)
        size = state_bytes(state)
        if self._budget is not None and size > self._budget:
            self._spill(client, state)
            return
        self._hot[client] = state
        self._hot_bytes += size
        self._evict()

    def __contains__(self, client: int) -> bool:
        return client in self._hot or client in self._cold

    def __len__(self) -> int:
        return len(self._hot) + len(self._cold)

    @property
    def hot_bytes(self) -> int:
        return self._hot_bytes

    @property
    def num_spilled(self) -> int:
        return len(self._cold)

    @property
    def spilled_bytes(self) -> int:
        """Bytes of state currently on disk (what the spill files hold)."""
        return sum(spilled.nbytes for spilled in self._cold.values())

    # -- checkpoints ----------------------------------------------------------------------
    def items(self) -> Iterator[tuple[int, Tensors]]:
        """Every stored state in client order; spilled ones as lazy copy-on-write mappings."""
        for client in sorted(itertools.chain(self._hot, self._cold)):
            hot = self._hot.get(client)
            yield client, (hot if hot is not None else self._read(self._cold[client], private=False))

    def export(self) -> dict[int, Tensors]:
        """A snapshot for checkpoints; stays valid (and unchanged) while the store moves on."""
        return dict(self.items())

    def load(self, states: dict[int, Tensors]) -> None:
        """Replace every state (restore from a checkpoint), spilling beyond the budget again."""
        self.clear()
        for client in sorted(states):
            self.put(client, states[client])

    def clear(self) -> None:
        for client in list(self._cold):
            self._discard(client)
        self._hot.clear()
        self._hot_bytes = 0

    def close(self) -> None:
        """Drop every state and delete the spill directory (if the store created it)."""
        self.clear()
        if self._finalizer is not None:
            self._finalizer()

    # -- internals ------------------------------------------------------------------------
    def _discard(self, client: int) -> None:
        hot = self._hot.pop(client, None)
        if hot is not None:
            self._hot_bytes -= state_bytes(hot)
        cold = self._cold.pop(client, None)
        if cold is not None:
            # Unlinking keeps any exported mapping of the file valid (POSIX semantics).
            cold.path.unlink(missing_ok=True)

    def _evict(self) -> None:
        if self._budget is None:
            return
        while self._hot_bytes > self._budget and self._hot:
            client, state = self._hot.popitem(last=False)
            self._hot_bytes -= state_bytes(state)
            self._spill(client, state)

    def _spill_dir(self) -> Path:
        if self._dir is None:
            if self._parent is not None:
                self._parent.mkdir(parents=True, exist_ok=True)
            self._dir = Path(tempfile.mkdtemp(prefix="flsim-state-", dir=self._parent))
            self._finalizer = weakref.finalize(self, shutil.rmtree, self._dir, True)
        return self._dir

    def _spill(self, client: int, state: Tensors) -> None:
        path = self._spill_dir() / f"c{client}-v{next(self._versions)}.bin"
        self.spills += 1
        if not all(isinstance(v, Tensor) for v in state.values()):
            torch.save(state, path)
            self._cold[client] = _Spilled(path, None, state_bytes(state))
            return
        layout = []
        offset = 0
        with open(path, "wb") as handle:
            for key, tensor in state.items():
                flat = tensor.detach().contiguous().reshape(-1)
                raw = flat.view(torch.uint8) if flat.numel() else flat.new_empty(0, dtype=torch.uint8)
                data = raw.numpy().tobytes()
                handle.write(data)
                layout.append((key, tensor.dtype, tuple(tensor.shape), offset, len(data)))
                # Pad so the next tensor starts aligned: viewing bytes as a wider dtype needs it.
                padding = -len(data) % _ALIGN
                handle.write(b"\0" * padding)
                offset += len(data) + padding
        self._cold[client] = _Spilled(path, tuple(layout), offset)

    def _read(self, spilled: _Spilled, *, private: bool) -> Tensors:
        if spilled.layout is None:
            return torch.load(spilled.path, weights_only=True)
        if spilled.nbytes == 0:
            raw = torch.empty(0, dtype=torch.uint8)
        elif private:
            raw = torch.from_numpy(np.fromfile(spilled.path, dtype=np.uint8))
        else:
            # MAP_PRIVATE: pages are read on first touch; writes would never reach the file.
            path = os.fspath(spilled.path)
            raw = torch.from_file(path, shared=False, size=spilled.nbytes, dtype=torch.uint8)
        out: Tensors = {}
        first = spilled.layout[0][1] if spilled.layout else None
        for key, dtype, shape, offset, length in spilled.layout:
            view = raw[offset : offset + length].view(dtype).reshape(shape)
            # One storage cannot be saved as two dtypes (torch.save refuses): a state that mixes
            # them (a client optimizer's float moments and int step counts) copies the others.
            out[key] = view if dtype == first else view.clone()
        return out
