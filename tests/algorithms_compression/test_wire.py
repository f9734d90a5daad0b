"""Wire payloads of the EF algorithms: raw bytes = the compressor's exact size, decode = its value."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from flsim.compression import (
    QSGD,
    Compressor,
    Identity,
    Natural,
    RandK,
    ScaledSign,
    ScaledToContractive,
    TopK,
)
from flsim.compression.wire import decode, payload_bytes, transmit

COMPRESSORS: list[Compressor] = [
    Identity(),
    TopK(k=3),
    TopK(fraction=0.1),
    RandK(k=4),
    RandK(k=4, shared_seed=True),
    ScaledSign(),
    QSGD(levels=1),
    QSGD(levels=5),
    Natural(),
    ScaledToContractive(RandK(k=4)),
    ScaledToContractive(QSGD(levels=3)),
    ScaledToContractive(Natural()),
]


def serialise(payload: dict[str, Tensor]) -> bytes:
    """What would travel: every tensor's raw bytes, in key order."""
    return b"".join(payload[key].contiguous().numpy().tobytes() for key in sorted(payload))


def deserialise(data: bytes, like: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rebuild a payload from raw bytes, knowing only each key's dtype and length."""
    out, offset = {}, 0
    for key in sorted(like):
        ref = like[key]
        size = ref.numel() * ref.element_size()
        array = np.frombuffer(data[offset : offset + size], dtype=ref.numpy().dtype).copy()
        out[key] = torch.from_numpy(array)
        offset += size
    assert offset == len(data)
    return out


def vector(d: int, dtype: torch.dtype, seed: int) -> Tensor:
    v = torch.randn(d, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 10
    if seed == 1:
        v[::3] = 0.0  # zeros, and fewer non-zeros than k for the sparsifiers
    return v


@pytest.mark.parametrize("compressor", COMPRESSORS, ids=repr)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("d", [1, 7, 300])
def test_payload_is_the_exact_encoded_message(compressor: Compressor, dtype: torch.dtype, d: int) -> None:
    for seed in range(3):
        v = vector(d, dtype, seed)
        reference = compressor.compress(v, torch.Generator().manual_seed(100 + seed))
        payload, decoded = transmit(compressor, v, torch.Generator().manual_seed(100 + seed))
        wire = serialise(payload)
        assert len(wire) == payload_bytes(payload) == reference.nbytes
        assert torch.equal(decoded, reference.value)
        received = decode(compressor, deserialise(wire, payload), v)
        assert torch.equal(received, reference.value) and received.dtype == dtype


@pytest.mark.parametrize("d", [256, 257, 40_000, 70_000])
def test_topk_indices_use_the_minimal_width_and_survive_the_sign_bit(d: int) -> None:
    """Indices ≥ 2^15 are stored in int16 by their bits; decoding must not read them as negative."""
    v = torch.zeros(d, dtype=torch.float64)
    v[[0, d // 2, d - 1]] = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    payload, decoded = transmit(TopK(k=3), v, None)
    width = {256: 1, 257: 2, 40_000: 2, 70_000: 4}[d]
    assert payload["indices"].element_size() == width
    assert payload_bytes(payload) == 3 * (8 + width)
    assert torch.equal(decoded, v)


def test_shared_seed_randk_needs_a_fresh_generator() -> None:
    generator = torch.Generator().manual_seed(5)
    torch.rand(1, generator=generator)
    with pytest.raises(ValueError, match="freshly seeded"):
        transmit(RandK(k=2, shared_seed=True), torch.ones(10), generator)


def test_sign_payload_is_one_scale_and_packed_bits() -> None:
    v = torch.tensor([1.0, -2.0, 3.0, -4.0, 5.0, 6.0, -7.0, 8.0, -9.0], dtype=torch.float64)
    payload, decoded = transmit(ScaledSign(), v, None)
    assert payload["signs"].tolist() == [0b01001010, 0b1]  # negatives at 1, 3, 6 and 8, LSB first
    assert float(payload["scale"][0]) == 5.0
    assert torch.equal(decoded, 5.0 * torch.where(v >= 0, 1.0, -1.0).double())
