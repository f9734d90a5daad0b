"""Compressor properties from docs/algorithms.md section E: contraction, unbiasedness, variance, bytes."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
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
    index_width,
)
from flsim.compression.compressors import resolve_k, topk_mask

F32, F64 = torch.float32, torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sq(v: Tensor) -> float:
    return float((v.double() ** 2).sum())


finite = st.floats(
    min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False, allow_subnormal=False
)
vectors = st.lists(finite, min_size=1, max_size=64).map(lambda xs: torch.tensor(xs, dtype=F64))


# ---------------------------------------------------------------- contraction (deterministic, exact)
@settings(max_examples=100, deadline=None)
@given(v=vectors, data=st.data())
def test_topk_contraction_holds_for_every_vector(v: Tensor, data: st.DataObject) -> None:
    d = v.numel()
    k = data.draw(st.integers(1, d))
    c = TopK(k=k)
    out = c.compress(v).value
    # ‖C(v) − v‖² ≤ (1 − k/d)‖v‖²; the slack only absorbs rounding when all |v_i| are equal.
    assert sq(out - v) <= (1 - c.delta(d)) * sq(v) * (1 + 1e-12) + 1e-300
    assert c.delta(d) == k / d


@settings(max_examples=100, deadline=None)
@given(v=vectors, data=st.data())
def test_topk_keeps_exactly_k_largest_with_lowest_index_ties(v: Tensor, data: st.DataObject) -> None:
    d = v.numel()
    k = data.draw(st.integers(1, d))
    mask = topk_mask(v, k)
    assert int(mask.sum()) == k
    a = v.abs()
    if k < d:
        assert a[mask].min() >= a[~mask].max()
        threshold = a[mask].min()
        tied = torch.nonzero(a == threshold).squeeze(1)
        kept_tied = torch.nonzero(mask & (a == threshold)).squeeze(1)
        assert torch.equal(kept_tied, tied[: kept_tied.numel()])  # lowest indices win


def test_topk_tie_breaking_is_by_index() -> None:
    v = torch.tensor([1.0, -3.0, 3.0, 2.0, -3.0, 3.0])
    assert TopK(k=2).compress(v).value.tolist() == [0.0, -3.0, 3.0, 0.0, 0.0, 0.0]
    assert TopK(k=3).compress(torch.ones(5)).value.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]


@settings(max_examples=100, deadline=None)
@given(v=vectors)
def test_scaled_sign_error_has_closed_form_and_contracts(v: Tensor) -> None:
    d = v.numel()
    out = ScaledSign().compress(v).value
    l1 = float(v.abs().sum())
    # ‖C(v) − v‖² = ‖v‖² − ‖v‖₁²/d  ≤ (1 − 1/d)‖v‖²  (δ(v) = ‖v‖₁²/(d‖v‖²) ≥ 1/d)
    assert sq(out - v) == pytest.approx(sq(v) - l1**2 / d, rel=1e-9, abs=1e-9 * (1 + sq(v)))
    assert sq(out - v) <= (1 - ScaledSign().delta(d)) * sq(v) * (1 + 1e-12) + 1e-9
    assert torch.all(out.abs() == out.abs()[0])  # one magnitude: the scale


def test_sign_sends_zero_as_plus_one() -> None:
    out = ScaledSign().compress(torch.tensor([0.0, -2.0, 1.0])).value
    assert out.tolist() == [1.0, -1.0, 1.0]


# ---------------------------------------------------------------- unbiasedness and variance (empirical)
VECTORS = [
    torch.tensor([3.0, -1.0, 0.5, 0.0, 2.0, -0.25, 1.5, 4.0], dtype=F64),
    torch.linspace(-2.0, 3.0, 25, dtype=F64),
    torch.tensor([1.0, 1.0 + 1e-6, -(4 / 3), 5.0], dtype=F64),  # near natural's worst case
]
DRAWS = 2000


def draws(c: Compressor, v: Tensor, n: int = DRAWS, seed: int = 0) -> Tensor:
    g = gen(seed)
    return torch.stack([c.compress(v, g).value for _ in range(n)])


def per_coordinate_variance_bound(c: Compressor, v: Tensor) -> Tensor:
    """An upper bound on Var C(v)_i, to set a statistical tolerance for the mean."""
    d = v.numel()
    if isinstance(c, RandK):
        return v**2 * (d / c.kept(d) - 1)
    if isinstance(c, QSGD):
        return torch.full_like(v, sq(v) / (4 * c.levels**2))
    if isinstance(c, Natural):
        return v**2 / 8
    raise AssertionError(c)


UNBIASED = [RandK(k=2), RandK(fraction=0.5), QSGD(levels=1), QSGD(levels=4), Natural()]


@pytest.mark.parametrize("c", UNBIASED, ids=repr)
@pytest.mark.parametrize("v", VECTORS, ids=["mixed", "linspace", "tight"])
def test_unbiased_compressors_mean_and_variance(c: Compressor, v: Tensor) -> None:
    samples = draws(c, v)
    d = v.numel()
    mean = samples.mean(0)
    tolerance = 6 * torch.sqrt(per_coordinate_variance_bound(c, v) / DRAWS) + 1e-12
    assert torch.all((mean - v).abs() <= tolerance), (mean - v).abs() / tolerance
    errors = ((samples - v) ** 2).sum(1)
    bound = c.omega(d) * sq(v)
    assert float(errors.mean()) <= bound + 6 * float(errors.std()) / math.sqrt(DRAWS) + 1e-12


def test_randk_error_closed_form_by_enumeration() -> None:
    """E‖C(v) − v‖² = (d/k − 1)‖v‖² exactly: each draw is (d/k)·v on a k-subset, subsets uniform."""
    v = torch.tensor([3.0, -1.0, 0.5, 2.0, -0.25, 1.5], dtype=F64)
    d, k = v.numel(), 2
    c = RandK(k=k)
    g = gen(7)
    counts: dict[tuple[int, ...], int] = {}
    for _ in range(1500):
        out = c.compress(v, g).value
        support = tuple(torch.nonzero(out).squeeze(1).tolist())
        assert len(support) == k
        assert torch.equal(out[list(support)], v[list(support)] * (d / k))
        counts[support] = counts.get(support, 0) + 1
    subsets = list(itertools.combinations(range(d), k))
    assert set(counts) == set(subsets)
    expected = 1500 / len(subsets)
    chi2 = sum((counts[s] - expected) ** 2 / expected for s in subsets)
    assert chi2 < 45  # 14 degrees of freedom; P(chi2 > 45) < 1e-4
    exact = 0.0
    for s in subsets:
        out = torch.zeros_like(v)
        out[list(s)] = v[list(s)] * (d / k)
        exact += sq(out - v) / len(subsets)
    assert exact == pytest.approx((d / k - 1) * sq(v), rel=1e-12)
    assert c.omega(d) == d / k - 1


def test_qsgd_omega_and_levels() -> None:
    assert QSGD(levels=2).omega(100) == min(100 / 4, 10 / 2)
    assert QSGD(levels=20).omega(100) == min(100 / 400, 10 / 20)
    v = torch.tensor([0.6, -0.8], dtype=F64)
    out = QSGD(levels=5).compress(v, gen(1)).value
    # ‖v‖ = 1, so every output is a multiple of 1/s with v's sign
    assert torch.allclose(out * 5, torch.round(out * 5), atol=1e-12)
    assert torch.all(out * v >= 0)
    assert torch.equal(QSGD(levels=3).compress(torch.zeros(4), gen(0)).value, torch.zeros(4))


def test_natural_rounds_to_neighbouring_powers_of_two() -> None:
    v = torch.tensor([0.0, 1.0, -3.0, 0.3, 1024.0, -1e-5], dtype=F64)
    out = Natural().compress(v, gen(3)).value
    assert out[0] == 0 and out[1] == 1 and out[4] == 1024
    assert out[2].item() in (-2.0, -4.0)
    assert out[3].item() in (0.25, 0.5)
    nonzero = out[out != 0].abs()
    assert torch.equal(torch.log2(nonzero), torch.round(torch.log2(nonzero)))


@pytest.mark.parametrize("base", [RandK(k=3), QSGD(levels=2), Natural()], ids=repr)
def test_scaled_to_contractive_contracts_in_expectation(base: Compressor) -> None:
    c = ScaledToContractive(base)
    v = VECTORS[1]
    d = v.numel()
    assert c.contractive and c.delta(d) == pytest.approx(1 / (1 + base.omega(d)))
    errors = ((draws(c, v, 2000) - v) ** 2).sum(1)
    assert float(errors.mean()) <= (1 - c.delta(d)) * sq(v) + 6 * float(errors.std()) / math.sqrt(2000)
    assert c.compress(v, gen(0)).nbytes == base.compress(v, gen(0)).nbytes


def test_declared_constants() -> None:
    assert (
        Identity().contractive
        and Identity().unbiased
        and Identity().delta(5) == 1
        and Identity().omega(5) == 0
    )
    assert TopK(fraction=0.1).delta(100) == 0.1 and not TopK(k=1).unbiased
    assert ScaledSign().delta(40) == 1 / 40 and not ScaledSign().unbiased
    assert RandK(k=5).omega(100) == 19 and not RandK(k=5).contractive
    assert Natural().omega(10) == 1 / 8
    with pytest.raises(NotImplementedError):
        RandK(k=1).delta(10)
    with pytest.raises(NotImplementedError):
        TopK(k=1).omega(10)


# ---------------------------------------------------------------- bytes, exact
def test_index_width() -> None:
    assert [index_width(d) for d in (1, 2, 100, 256, 257, 1000, 65536, 65537, 100_000)] == [
        1, 1, 1, 1, 2, 2, 2, 4, 4,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("compressor", "d", "dtype", "expected"),
    [
        (Identity(), 100, F32, 400),
        (Identity(), 1000, F64, 8000),
        (TopK(k=5), 100, F32, 5 * (4 + 1)),
        (TopK(k=10), 1000, F64, 10 * (8 + 2)),
        (TopK(k=100), 100_000, F32, 100 * (4 + 4)),
        (TopK(fraction=0.01), 100_000, F64, 1000 * (8 + 4)),
        (RandK(k=5), 100, F32, 5 * (4 + 1)),
        (RandK(k=10), 1000, F32, 10 * (4 + 2)),
        (RandK(k=100), 100_000, F64, 100 * (8 + 4)),
        (RandK(k=10, shared_seed=True), 1000, F32, 10 * 4 + 8),
        (QSGD(levels=1), 100, F32, 4 + math.ceil(100 * 2 / 8)),  # 1 sign + 1 level bit
        (QSGD(levels=4), 100, F32, 4 + 50),  # 1 + ceil(log2 5) = 4 bits
        (QSGD(levels=3), 1000, F64, 8 + 375),  # 1 + 2 bits
        (QSGD(levels=255), 1000, F32, 4 + 1125),  # 1 + 8 bits
        (ScaledSign(), 100, F32, 4 + 13),
        (ScaledSign(), 1000, F64, 8 + 125),
        (ScaledSign(), 100_000, F32, 4 + 12_500),
        (Natural(), 100, F32, 113),
        (Natural(), 1000, F64, 1125),
        (Natural(), 100_000, F32, 112_500),
    ],
    ids=lambda p: repr(p) if isinstance(p, Compressor) else str(p),
)
def test_message_bytes_match_hand_count(
    compressor: Compressor, d: int, dtype: torch.dtype, expected: int
) -> None:
    v = torch.randn(d, generator=gen(0), dtype=dtype)
    out = compressor.compress(v, gen(1))
    assert out.nbytes == expected == compressor.message_nbytes(d, dtype)
    assert out.value.dtype == dtype and out.value.shape == v.shape


def test_resolve_k() -> None:
    assert resolve_k(100, 5, None) == 5
    assert resolve_k(3, 5, None) == 3  # clipped to d
    assert resolve_k(100, None, 0.07) == 7
    assert resolve_k(100, None, 0.001) == 1
    assert resolve_k(10, None, 0.25) == 3  # 2.5 rounds up
    with pytest.raises(ValueError):
        resolve_k(10, 1, 0.5)
    with pytest.raises(ValueError):
        resolve_k(10, None, None)
    with pytest.raises(ValueError):
        TopK(k=0)


# ---------------------------------------------------------------- determinism and dtypes
ALL = [
    Identity(),
    TopK(k=3),
    RandK(k=3),
    QSGD(levels=4),
    ScaledSign(),
    Natural(),
    ScaledToContractive(QSGD(levels=2)),
]


@pytest.mark.parametrize("c", ALL, ids=repr)
@pytest.mark.parametrize("dtype", [F32, F64])
def test_same_seed_same_output_and_dtype_kept(c: Compressor, dtype: torch.dtype) -> None:
    v = torch.randn(50, generator=gen(5), dtype=dtype)
    a, b = c.compress(v, gen(11)), c.compress(v, gen(11))
    assert torch.equal(a.value, b.value) and a.nbytes == b.nbytes
    assert a.value.dtype == dtype
    if c.stochastic:
        assert not torch.equal(a.value, c.compress(v, gen(12)).value)
    assert torch.equal(v, torch.randn(50, generator=gen(5), dtype=dtype))  # input untouched


@pytest.mark.parametrize("c", [RandK(k=1), QSGD(levels=1), Natural()], ids=repr)
def test_stochastic_compressors_refuse_global_rng(c: Compressor) -> None:
    with pytest.raises(ValueError, match="Generator"):
        c.compress(torch.ones(4))


def test_input_contract() -> None:
    with pytest.raises(ValueError, match="1-D"):
        TopK(k=1).compress(torch.ones(2, 2))
    with pytest.raises(ValueError, match="floating"):
        TopK(k=1).compress(torch.ones(3, dtype=torch.int64))
