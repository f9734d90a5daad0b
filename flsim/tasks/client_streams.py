"""Many clients' ``(seed, purpose, node)`` generators at once, bit-identical to ``numpy_rng``.

A streamed pass over 10⁶ clients (the exact optimum of a lazy population, its client sizes)
needs each client's own stream. Building it with :func:`flsim.rng.numpy_rng` costs a
``SeedSequence`` and a ``PCG64`` construction, tens of microseconds of Python a client, more
than the client's draws themselves. Here NumPy's seeding is reproduced with array arithmetic
over a whole block of node ids at once:

1. ``SeedSequence`` hashes its entropy words ``[seed, purpose key, node + 1, counter + 1]``
   into a pool of four 32-bit words (a multiply-xorshift hash whose constants advance the
   same way for every node, so one array operation serves all nodes);
2. the pool yields four 64-bit words, the seed and increment of a 128-bit PCG64 (NumPy's
   ``pcg64_set_seed``: state = 0, inc = 2·seq + 1, one step, add the seed, one step);
3. one reusable ``Generator`` is set to each node's state in turn.

The result is checked against ``numpy_rng`` for many seeds and nodes (tests/scale), so a
NumPy release that changed its seeding would fail there rather than change data silently.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from flsim.rng import _purpose_key as purpose_key  # the same key numpy_rng hashes

_MASK32 = 0xFFFF_FFFF
_MASK128 = (1 << 128) - 1
# SeedSequence's hash constants (NumPy's bit_generator.pyx).
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_MULT_L, _MIX_MULT_R = 0xCA01F9DD, 0x4973F715
_POOL_SIZE = 4
# PCG64's 128-bit LCG multiplier.
_PCG_MULTIPLIER = (2549297995355413924 << 64) | 4865540595714422341


def _uint32_words(value: int) -> list[int]:
    """An integer as SeedSequence reads it: little-endian 32-bit words, ``[0]`` for zero."""
    if value < 0:
        raise ValueError(f"stream entropy must be non-negative, got {value}")
    words = []
    while value:
        words.append(value & _MASK32)
        value >>= 32
    return words or [0]


class _Hash:
    """The running hash constant of one SeedSequence pass (identical for every node)."""

    def __init__(self, start: int, multiplier: int) -> None:
        self.value = start
        self.multiplier = multiplier

    def __call__(self, words: np.ndarray) -> np.ndarray:
        out = words ^ np.uint32(self.value)
        self.value = (self.value * self.multiplier) & _MASK32
        out = out * np.uint32(self.value)
        return out ^ (out >> np.uint32(16))


def _mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = np.uint32(_MIX_MULT_L) * x - np.uint32(_MIX_MULT_R) * y
    return out ^ (out >> np.uint32(16))


def _pool(entropy: list[np.ndarray]) -> list[np.ndarray]:
    """SeedSequence's ``mix_entropy`` over columns of entropy words (one row per node)."""
    hashmix = _Hash(_INIT_A, _MULT_A)
    zeros = np.zeros_like(entropy[0])
    pool = [hashmix(entropy[i] if i < len(entropy) else zeros) for i in range(_POOL_SIZE)]
    for src in range(_POOL_SIZE):
        for dst in range(_POOL_SIZE):
            if src != dst:
                pool[dst] = _mix(pool[dst], hashmix(pool[src]))
    for src in range(_POOL_SIZE, len(entropy)):
        for dst in range(_POOL_SIZE):
            pool[dst] = _mix(pool[dst], hashmix(entropy[src]))
    return pool


def _seed_words(pool: list[np.ndarray]) -> list[np.ndarray]:
    """SeedSequence's ``generate_state(4, uint64)``: eight 32-bit words, paired little-endian."""
    hashed = _Hash(_INIT_B, _MULT_B)
    words = [hashed(pool[i % _POOL_SIZE]) for i in range(8)]
    return [
        words[2 * k].astype(np.uint64) | (words[2 * k + 1].astype(np.uint64) << np.uint64(32))
        for k in range(4)
    ]


def pcg64_states(
    seed: int, purpose: str, nodes: Sequence[int] | np.ndarray, counter: int = 0
) -> list[tuple[int, int]]:
    """(state, inc) of ``numpy_rng(seed, purpose, node, counter)``'s PCG64 for every node."""
    ids = np.asarray(nodes, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= _MASK32):
        raise ValueError("node ids must lie in [0, 2**32 - 1) for block seeding")
    column = (ids + 1).astype(np.uint32)
    head = [*_uint32_words(int(seed)), *_uint32_words(purpose_key(purpose))]
    entropy = [np.full_like(column, w) for w in head] + [column]
    entropy += [np.full_like(column, w) for w in _uint32_words(int(counter) + 1)]
    s_hi, s_lo, i_hi, i_lo = (w.tolist() for w in _seed_words(_pool(entropy)))
    states = []
    for a, b, c, d in zip(s_hi, s_lo, i_hi, i_lo, strict=True):
        inc = ((((c << 64) | d) << 1) | 1) & _MASK128
        state = (inc + ((a << 64) | b)) & _MASK128
        states.append(((state * _PCG_MULTIPLIER + inc) & _MASK128, inc))
    return states


def client_generators(
    seed: int, purpose: str, nodes: Sequence[int] | np.ndarray, counter: int = 0
) -> Iterator[np.random.Generator]:
    """One generator per node, drawing exactly what ``numpy_rng(seed, purpose, node)`` draws.

    The *same* ``Generator`` object is yielded each time, re-seeded: use it up before asking
    for the next one (a streamed pass does).
    """
    bit_generator = np.random.PCG64(0)
    generator = np.random.Generator(bit_generator)
    for state, inc in pcg64_states(seed, purpose, nodes, counter):
        bit_generator.state = {
            "bit_generator": "PCG64",
            "state": {"state": state, "inc": inc},
            "has_uint32": 0,
            "uinteger": 0,
        }
        yield generator
