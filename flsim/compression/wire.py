"""Wire payloads: compressed messages as tensor dicts whose raw bytes *are* the encoded message.

The compressors (:mod:`flsim.compression.compressors`) return the decoded vector and the exact
size of the encoded message, which is all the generic channel needs. The round-based EF
algorithms (``econtrol``, ``ef14``, ``ef21``, ``compressed_sgd``, ``ef21_sgdm``) instead reply
with the encoded message itself, so that the engine's ordinary byte count — the sum of the
reply tensors' bytes (:func:`flsim.algorithms.base.tensor_bytes`) — is the compressed size
(docs/algorithms.md E: "Bytes are counted exactly: Top-k sends k values and k indices"), and the
server really decodes what was sent. :func:`encode` produces such a payload and
:func:`decode` inverts it, bit for bit: for every compressor, ``tensor_bytes(encode(...))``
equals ``Compressed.nbytes`` and ``decode(encode(...))`` equals ``Compressed.value``.

Formats (w = bytes per value of the vector's dtype, d = length):

* ``dense``: ``{"dense": v}``, d·w bytes: the identity compressor, and the one uncompressed
  initialisation message of EControl and EF21 (E, "Init").
* top-k, rand-k: ``{"values": k values, "indices": k indices}``, the indices at
  :func:`~flsim.compression.compressors.index_width` (d) bytes each. One-byte indices are a
  ``uint8`` tensor; wider ones are ``int16`` / ``int32`` / ``int64`` holding the *bits* of the
  unsigned index (two's complement reinterpretation), because unsigned 16/32-bit tensors cannot
  be pickled by torch, and replies cross process boundaries on the Ray backend.
* rand-k with ``shared_seed``: ``{"values": k values, "seed": one int64}``; the receiver
  regenerates the indices from the seed, which must seed a fresh generator.
* scaled sign: ``{"scale": 1 value, "signs": ⌈d/8⌉ uint8}``, the sign bits packed LSB first.
* QSGD(s): ``{"norm": 1 value, "codes": ⌈d(1 + b)/8⌉ uint8}`` with b = ⌈log2(s+1)⌉: per
  coordinate one sign bit then b level bits, packed LSB first.
* natural: ``{"codes": ⌈9d/8⌉ uint8}``: per coordinate one sign bit then the 8-bit float32
  exponent code (a + 127 for ±2^a, 0 for zero).
* :class:`~flsim.compression.compressors.ScaledToContractive` sends its base compressor's
  payload; the receiver divides by 1 + ω as the compressor does.

The payload is derived from the compressor's own output (and, where needed, the input ``v`` or a
copy of the generator's state before compression), so the maths stays in one place.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flsim.compression.compressors import (
    QSGD,
    Compressed,
    Compressor,
    Identity,
    Natural,
    RandK,
    ScaledSign,
    ScaledToContractive,
    TopK,
    index_width,
    topk_mask,
)

__all__ = ["DENSE", "decode", "dense_payload", "encode", "payload_bytes", "transmit"]

Tensors = dict[str, Tensor]

#: The key of an uncompressed payload.
DENSE = "dense"

_INDEX_DTYPES = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
#: Natural compression's exponent code: ±2^a is sent as a + _NATURAL_BIAS (float32's bias); 0 → 0.
_NATURAL_BIAS = 127


def payload_bytes(payload: Tensors) -> int:
    """Raw size of a payload: the sum of its tensors' bytes (what ``tensor_bytes`` counts)."""
    return sum(int(t.numel()) * t.element_size() for t in payload.values())


def dense_payload(v: Tensor) -> Tensors:
    """An uncompressed message (d values), e.g. EControl's h_i = g_i(x⁰) (E, "Init")."""
    return {DENSE: v}


# ------------------------------------------------------------------ integer and bit packing
def _pack_indices(idx: Tensor, d: int) -> Tensor:
    """Unsigned indices < d as index_width(d)-byte integers (bits of the unsigned value)."""
    width = index_width(d)
    idx = idx.to(torch.int64)
    if width == 1:
        return idx.to(torch.uint8)
    if width == 8:
        return idx
    half = 1 << (8 * width - 1)
    return torch.where(idx >= half, idx - 2 * half, idx).to(_INDEX_DTYPES[width])


def _unpack_indices(stored: Tensor) -> Tensor:
    """Inverse of :func:`_pack_indices`: int64 indices."""
    width = stored.element_size()
    out = stored.to(torch.int64)
    if width in (1, 8):
        return out
    return torch.remainder(out, 1 << (8 * width))


def _pack_bits(bits: Tensor) -> Tensor:
    """A flat 0/1 tensor as ⌈len/8⌉ bytes, least significant bit first."""
    n = int(bits.numel())
    padded = torch.zeros(-(-n // 8) * 8, dtype=torch.int64)
    padded[:n] = bits.to(torch.int64)
    weights = torch.tensor([1 << j for j in range(8)], dtype=torch.int64)
    return (padded.view(-1, 8) * weights).sum(1).to(torch.uint8)


def _unpack_bits(packed: Tensor, n: int) -> Tensor:
    """The first ``n`` bits of :func:`_pack_bits` output, as int64 0/1."""
    shifts = torch.arange(8, dtype=torch.int64)
    return ((packed.to(torch.int64).unsqueeze(1) >> shifts) & 1).reshape(-1)[:n]


def _fields(values: Tensor, bits: int) -> Tensor:
    """Non-negative integers < 2**bits as rows of ``bits`` 0/1 entries, least significant first."""
    shifts = torch.arange(bits, dtype=torch.int64)
    return (values.to(torch.int64).unsqueeze(1) >> shifts) & 1


def _from_fields(rows: Tensor) -> Tensor:
    weights = torch.tensor([1 << j for j in range(rows.shape[1])], dtype=torch.int64)
    return (rows * weights).sum(1)


def _scalar(value: Tensor, like: Tensor) -> Tensor:
    """A one-element tensor in ``like``'s dtype: one value on the wire."""
    return value.reshape(1).to(like.dtype)


# ------------------------------------------------------------------ encode / decode
def _base(compressor: Compressor) -> tuple[Compressor, bool]:
    """(the compressor whose message travels, whether the receiver divides by 1 + ω)."""
    if isinstance(compressor, ScaledToContractive):
        return compressor.base, True
    return compressor, False


def _encode_randk(
    base: RandK, d: int, value: Tensor, generator_state: Tensor | None, seed: int | None
) -> Tensors:
    """Rand-k: the kept values, and the seed (shared) or the packed indices to place them."""
    k = base.kept(d)
    if base.shared_seed:
        if seed is None:
            raise ValueError("rand-k with shared_seed needs the generator's seed")
        idx = _randk_indices(d, k, _fresh(seed).get_state())
        return {"values": value.index_select(0, idx), "seed": torch.tensor([seed], dtype=torch.int64)}
    if generator_state is None:
        raise ValueError("rand-k needs the generator state from before compression")
    idx = _randk_indices(d, k, generator_state)
    return {"values": value.index_select(0, idx), "indices": _pack_indices(idx, d)}


def encode(
    compressor: Compressor,
    v: Tensor,
    sent: Compressed,
    generator_state: Tensor | None = None,
    seed: int | None = None,
) -> Tensors:
    """The wire payload of ``sent = compressor.compress(v, generator)``.

    Args:
        compressor: the operator that produced ``sent``.
        v: its input (QSGD's norm is recomputed from it; top-k's mask too).
        sent: its output.
        generator_state: ``generator.get_state()`` taken *before* compressing (rand-k without
            a shared seed re-draws its index permutation from it).
        seed: the seed of the fresh generator used (rand-k with ``shared_seed``).
    """
    base, scaled = _base(compressor)
    d = int(v.numel())
    value = sent.value
    if isinstance(base, Identity):
        return dense_payload(value)
    if isinstance(base, TopK):
        idx = torch.nonzero(topk_mask(v, base.kept(d))).reshape(-1)
        return {"values": value.index_select(0, idx), "indices": _pack_indices(idx, d)}
    if isinstance(base, RandK):
        return _encode_randk(base, d, value, generator_state, seed)
    if isinstance(base, ScaledSign):
        # value = scale · (±1): |value_0| is the scale exactly; a zero scale sends + signs.
        return {"scale": _scalar(value[0].abs(), value), "signs": _pack_bits(torch.signbit(value))}
    if isinstance(base, QSGD):
        norm = torch.linalg.vector_norm(v)
        s = base.levels
        if norm == 0:
            levels = torch.zeros(d, dtype=torch.int64)
        else:
            unscaled = value * (1.0 + base.omega(d)) if scaled else value
            # value = norm·sign·level/s with an integer level ≤ s: rounding recovers it exactly.
            levels = torch.round(unscaled.abs() * s / norm).to(torch.int64)
        rows = torch.cat(
            [torch.signbit(value).to(torch.int64).unsqueeze(1), _fields(levels, s.bit_length())], 1
        )
        return {"norm": _scalar(norm, value), "codes": _pack_bits(rows.reshape(-1))}
    if isinstance(base, Natural):
        unscaled = value * (1.0 + base.omega(d)) if scaled else value
        magnitude = unscaled.abs().to(torch.float64)
        exponent = torch.round(torch.log2(torch.where(magnitude > 0, magnitude, 1.0))).to(torch.int64)
        codes = torch.where(magnitude > 0, exponent + _NATURAL_BIAS, 0)
        if bool(((codes < 0) | (codes > 255)).any()):
            raise ValueError("natural compression: a value outside the float32 exponent range cannot be sent")
        rows = torch.cat([torch.signbit(value).to(torch.int64).unsqueeze(1), _fields(codes, 8)], 1)
        return {"codes": _pack_bits(rows.reshape(-1))}
    raise ValueError(f"no wire format for compressor {compressor!r}")


def decode(compressor: Compressor, payload: Tensors, like: Tensor) -> Tensor:
    """The receiver's reconstruction of ``payload``: a vector shaped and typed like ``like``.

    A ``dense`` payload is returned as is, whatever the compressor (the initialisation message).
    """
    if DENSE in payload:
        return payload[DENSE]
    base, scaled = _base(compressor)
    d = int(like.numel())
    dtype = like.dtype
    if isinstance(base, (TopK, RandK)):
        values = payload["values"]
        if "seed" in payload:
            assert isinstance(base, RandK)
            idx = _randk_indices(d, base.kept(d), _fresh(int(payload["seed"][0])).get_state())
        else:
            idx = _unpack_indices(payload["indices"])
        # Rand-k's scaling (and ScaledToContractive's) is already in the sent values.
        return torch.zeros(d, dtype=dtype).index_copy_(0, idx, values)
    if isinstance(base, ScaledSign):
        negative = _unpack_bits(payload["signs"], d).bool()
        signs = torch.where(negative, -1.0, 1.0).to(dtype)
        return payload["scale"][0] * signs
    if isinstance(base, QSGD):
        s = base.levels
        rows = _unpack_bits(payload["codes"], d * (1 + s.bit_length())).view(d, -1)
        signs = torch.where(rows[:, 0].bool(), -1.0, 1.0).to(dtype)
        level = _from_fields(rows[:, 1:]).to(dtype)
        out = payload["norm"][0] * signs * level / s  # the compressor's expression, term for term
    elif isinstance(base, Natural):
        rows = _unpack_bits(payload["codes"], 9 * d).view(d, 9)
        codes = _from_fields(rows[:, 1:])
        magnitude = torch.ldexp(torch.ones(d, dtype=dtype), codes - _NATURAL_BIAS)
        signs = torch.where(rows[:, 0].bool(), -1.0, 1.0).to(dtype)
        out = torch.where(codes == 0, torch.zeros(d, dtype=dtype), signs * magnitude)
    else:
        raise ValueError(f"no wire format for compressor {compressor!r}")
    return out / (1.0 + base.omega(d)) if scaled else out


def transmit(compressor: Compressor, v: Tensor, generator: torch.Generator | None) -> tuple[Tensors, Tensor]:
    """Compress ``v`` and return (the payload to send, the receiver's decoded value).

    The sender should use the *decoded* value in its own recursions (e.g. h_i ← h_i + Δ_i), so
    that its copy of h_i and the server's are the same bits by construction. A stochastic
    compressor needs ``generator``; rand-k with a shared seed needs a freshly seeded one.
    """
    base, _ = _base(compressor)
    state = generator.get_state() if generator is not None and isinstance(base, RandK) else None
    seed: int | None = None
    if isinstance(base, RandK) and base.shared_seed:
        assert generator is not None and state is not None
        seed = generator.initial_seed()
        if not torch.equal(_fresh(seed).get_state(), state):
            raise ValueError("rand-k with shared_seed needs a freshly seeded generator")
    sent = compressor.compress(v, generator)
    payload = encode(compressor, v, sent, state, seed)
    return payload, decode(compressor, payload, v)


def _fresh(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randk_indices(d: int, k: int, state: Tensor) -> Tensor:
    """The k indices :class:`RandK` draws first from a generator in ``state``."""
    generator = torch.Generator()
    generator.set_state(state)
    return torch.randperm(d, generator=generator)[:k]
