"""Per-purpose random streams derived from ``(seed, purpose, node, counter)``.

No code in flsim touches global RNG state. Every draw comes from a generator whose seed is
a pure function of the scenario seed and of *what* the draw is for, so the result does not
depend on where (which actor) or in which order work runs, and a resumed run sees exactly
the draws an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def _purpose_key(purpose: str) -> int:
    """A stable 32-bit integer for a purpose name (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(purpose.encode(), digest_size=4).digest(), "little")


def seed_sequence(seed: int, purpose: str, node: int = 0, counter: int = 0) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed), _purpose_key(purpose), int(node) + 1, int(counter) + 1])


def numpy_rng(seed: int, purpose: str, node: int = 0, counter: int = 0) -> np.random.Generator:
    """A NumPy generator for one purpose, one node and one counter value (e.g. a round)."""
    return np.random.Generator(np.random.PCG64(seed_sequence(seed, purpose, node, counter)))


def torch_rng(seed: int, purpose: str, node: int = 0, counter: int = 0) -> torch.Generator:
    """A CPU torch generator seeded from the same derivation as :func:`numpy_rng`."""
    import torch  # here: topology code derives numpy streams and must not import torch

    state = seed_sequence(seed, purpose, node, counter).generate_state(2, dtype=np.uint32)
    generator = torch.Generator()
    generator.manual_seed(int(state[0]) | (int(state[1]) << 32) & 0x7FFF_FFFF_FFFF_FFFF)
    return generator


@dataclass(frozen=True)
class Streams:
    """A run's seeded streams, handed to the parts that draw (algorithms, through their host).

    An algorithm asks for the generator of a purpose, a node and a counter; it never sees the
    scenario seed, so it cannot derive a stream outside this scheme.
    """

    _seed: int = 0

    def numpy(self, purpose: str, node: int = 0, counter: int = 0) -> np.random.Generator:
        return numpy_rng(self._seed, purpose, node, counter)

    def torch(self, purpose: str, node: int = 0, counter: int = 0) -> torch.Generator:
        return torch_rng(self._seed, purpose, node, counter)


#: The streams of seed 0: the default of algorithms built outside a run (tests, benchmarks).
SEED_0_STREAMS = Streams()
