"""Compressors on flat 1-D tensors, with exact byte accounting (docs/algorithms.md, section E).

Every compressor maps a vector ``v`` (float32 or float64, 1-D) to a :class:`Compressed`: the
*decoded* dense tensor that the receiver reconstructs (same dtype and shape as ``v``), and the
exact size in bytes of the encoded message that would travel on the wire. Simulating the wire
format itself would cost time and buy nothing: the engine only needs the decoded values (for the
maths) and the size (for link latency and the ``bytes_up`` / ``bytes_down`` metrics).

Two families, each declaring its constant so that algorithms and step-size rules can use it:

* **contractive** (``contractive = True``, ``delta(d)``): E‖C(v) − v‖² ≤ (1 − δ)‖v‖², the
  assumption of EControl / EF14 / EF21 (section E, first line);
* **unbiased** (``unbiased = True``, ``omega(d)``): E C(v) = v and E‖C(v) − v‖² ≤ ω‖v‖².

An unbiased compressor becomes contractive with δ = 1/(1+ω) once divided by 1+ω
(:class:`ScaledToContractive`), which is how rand-k, QSGD or natural compression can be used
under error feedback.

Randomness: no compressor touches global RNG state. Stochastic ones draw only from the
``torch.Generator`` that the caller passes (typically ``flsim.rng.torch_rng(seed,
"compression", node, round)``), so the same generator seed gives bit-identical output.
Deterministic ones accept ``generator=None``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "QSGD",
    "Compressed",
    "Compressor",
    "Identity",
    "Natural",
    "RandK",
    "ScaledSign",
    "ScaledToContractive",
    "TopK",
    "index_width",
    "resolve_k",
    "topk_mask",
]


@dataclass(frozen=True)
class Compressed:
    """One encoded message, represented by what the receiver decodes and what it costs.

    Attributes:
        value: the decoded dense vector C(v), in the input's dtype and shape.
        nbytes: exact size of the encoded message in bytes (see each compressor's docstring).
        reset: ``True`` for the one uncompressed initialisation message of EF21 / EControl
            (docs/algorithms.md E, "Init"): the receiver *replaces* its mirror by ``value`` instead of
            adding ``value`` to it. Compressors themselves always set ``False``.
    """

    value: Tensor
    nbytes: int
    reset: bool = False


def index_width(d: int) -> int:
    """Bytes per coordinate index for a vector of length ``d``.

    ceil(log2 d) bits, rounded up to a standard unsigned integer width (1, 2, 4 or 8 bytes), so
    d ≤ 256 → 1 byte, d ≤ 65 536 → 2 bytes, d ≤ 2³² → 4 bytes. A receiver reads such indices
    without bit-unpacking, which is what real sparse formats do. d = 1 still takes one byte.
    """
    if d < 1:
        raise ValueError(f"vector length must be >= 1, got {d}")
    bits = (d - 1).bit_length()  # == ceil(log2 d) for d >= 1
    for width in (1, 2, 4, 8):
        if bits <= 8 * width:
            return width
    raise ValueError(f"vector length {d} needs more than 64-bit indices")


def resolve_k(d: int, k: int | None, fraction: float | None) -> int:
    """The number of kept coordinates for top-k / rand-k on a vector of length ``d``.

    ``k`` is absolute and clipped to d (a model smaller than k is sent whole, δ = 1);
    ``fraction`` keeps round(fraction · d) coordinates, half rounded up, and at least one, so
    that a small fraction on a small model still sends something. Exactly one must be given.
    """
    if (k is None) == (fraction is None):
        raise ValueError("give exactly one of k and fraction")
    if k is not None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        return min(int(k), d)
    assert fraction is not None
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    return min(d, max(1, math.floor(fraction * d + 0.5)))


def _check_vector(v: Tensor) -> int:
    """Validate the input contract (1-D floating tensor) and return d."""
    if v.dim() != 1:
        raise ValueError(f"compressors take flat 1-D tensors, got shape {tuple(v.shape)}")
    if not v.is_floating_point():
        raise ValueError(f"compressors take floating-point tensors, got {v.dtype}")
    if v.numel() == 0:
        raise ValueError("cannot compress an empty vector")
    return int(v.numel())


def _require_generator(generator: torch.Generator | None, name: str) -> torch.Generator:
    """Stochastic compressors refuse to fall back on global RNG (determinism contract)."""
    if generator is None:
        raise ValueError(f"{name} is stochastic and needs an explicit torch.Generator")
    return generator


def _uniform(like: Tensor, generator: torch.Generator) -> Tensor:
    """Uniforms on [0, 1) shaped like ``like``, drawn on the generator's device (flsim's are CPU)."""
    u = torch.rand(like.numel(), generator=generator, dtype=like.dtype, device=generator.device)
    return u.to(like.device)


def _width(dtype: torch.dtype) -> int:
    """Bytes per value of ``dtype`` (4 for float32, 8 for float64)."""
    return dtype.itemsize


class Compressor(ABC):
    """A (possibly stochastic) compression operator C on flat vectors.

    Subclasses set ``name``, ``contractive`` and ``unbiased`` and implement :meth:`compress`,
    :meth:`message_nbytes` and whichever of :meth:`delta` / :meth:`omega` applies.
    """

    name: str = "compressor"
    contractive: bool = False
    unbiased: bool = False
    stochastic: bool = False

    @abstractmethod
    def compress(self, v: Tensor, generator: torch.Generator | None = None) -> Compressed:
        """Compress ``v`` and return its decoded value and exact encoded size."""

    @abstractmethod
    def message_nbytes(self, d: int, dtype: torch.dtype) -> int:
        """Exact size of one message for a length-``d`` vector of ``dtype`` (data independent)."""

    def delta(self, d: int) -> float:
        """Contraction constant δ: E‖C(v) − v‖² ≤ (1 − δ)‖v‖² for every v ∈ R^d."""
        raise NotImplementedError(f"{self.name} is not contractive")

    def omega(self, d: int) -> float:
        """Variance constant ω of an unbiased compressor: E‖C(v) − v‖² ≤ ω‖v‖²."""
        raise NotImplementedError(f"{self.name} is not unbiased")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@dataclass(frozen=True, repr=True)
class Identity(Compressor):
    """No compression: C(v) = v. Contractive with δ = 1 and unbiased with ω = 0.

    Bytes: d values at the value dtype's width. Used as the reference in property (a) of
    section E (EControl with C = identity is plain gradient descent).
    """

    name = "identity"
    contractive = True
    unbiased = True

    def compress(self, v: Tensor, generator: torch.Generator | None = None) -> Compressed:
        d = _check_vector(v)
        return Compressed(v.clone(), self.message_nbytes(d, v.dtype))

    def message_nbytes(self, d: int, dtype: torch.dtype) -> int:
        return d * _width(dtype)

    def delta(self, d: int) -> float:
        return 1.0

    def omega(self, d: int) -> float:
        return 0.0


@dataclass(frozen=True, repr=True)
class TopK(Compressor):
    """Keep the k entries of largest magnitude; contractive with δ = k/d (section E).

    Deterministic: ‖C(v) − v‖² is the sum of the d − k smallest squares, which is at most
    (1 − k/d)‖v‖² for every v, not only in expectation. Ties in |v_i| are broken towards the
    *lower index*, so the selection never depends on the sorting kernel or thread count.

    Bytes: k values at the value width + k indices at :func:`index_width` (d) bytes each, the
    sparse format of section E ("Top-k sends k values and k indices"), even when k is so large
    that a dense message would be smaller.
    """

    k: int | None = None
    fraction: float | None = None
    name = "topk"
    contractive = True

    def __post_init__(self) -> None:
        resolve_k(1 << 62, self.k, self.fraction)  # validates the k / fraction combination

    def kept(self, d: int) -> int:
        """k for a length-``d`` vector (see :func:`resolve_k`)."""
        return resolve_k(d, self.k, self.fraction)

    def compress(self, v: Tensor, generator: torch.Generator | None = None) -> Compressed:
        d = _check_vector(v)
        out = torch.where(topk_mask(v, self.kept(d)), v, torch.zeros((), dtype=v.dtype))
        return Compressed(out, self.message_nbytes(d, v.dtype))

    def message_nbytes(self, d: int, dtype: torch.dtype) -> int:
        k = self.kept(d)
        return k * (_width(dtype) + index_width(d))

    def delta(self, d: int) -> float:
        return self.kept(d) / d


def topk_mask(v: Tensor, k: int) -> Tensor:
    """Boolean mask of the k largest |v_i|, ties at the threshold broken towards lower indices.

    ``torch.topk`` returns the k-th largest *value* deterministically but not which of several
    tied entries it picks. So keep everything at or above that threshold; only if that is more
    than k entries (a tie straddles the cut) keep the strictly larger ones plus the
    lowest-indexed tied ones. The fast path costs one top-k and one comparison.
    """
    d = v.numel()
    if k >= d:
        return torch.ones(d, dtype=torch.bool)
    a = v.abs()
    threshold = torch.topk(a, k, sorted=False).values.min()
    mask = a >= threshold
    if int(torch.count_nonzero(mask)) != k:
        above = a > threshold
        tied = a == threshold
        mask = above | (tied & (torch.cumsum(tied, 0) <= k - int(torch.count_nonzero(above))))
    return mask


@dataclass(frozen=True, repr=True)
class RandK(Compressor):
    """k coordinates chosen uniformly without replacement, scaled by d/k: unbiased, ω = d/k − 1.

    E C(v) = v because each coordinate is kept with probability k/d, and
    E‖C(v) − v‖² = (d/k − 1)‖v‖² *exactly* (not only as a bound). Indices come from
    ``torch.randperm`` on the caller's generator.

    Bytes: by default k values + k indices (as top-k), which needs no coordination. With
    ``shared_seed=True`` the receiver regenerates the indices from a seed it can derive (flsim's
    generators are a pure function of ``(seed, purpose, node, counter)``), so the message is
    k values + one 8-byte seed.
    """

    k: int | None = None
    fraction: float | None = None
    shared_seed: bool = False
    name = "randk"
    unbiased = True
    stochastic = True

    def __post_init__(self) -> None:
        resolve_k(1 << 62, self.k, self.fraction)

    def kept(self, d: int) -> int:
        """k for a length-``d`` vector (see :func:`resolve_k`)."""
        return resolve_k(d, self.k, self.fraction)

    def compress(self, v: Tensor, generator: torch.Generator | None = None) -> Compressed:
        d = _check_vector(v)
        g = _require_generator(generator, self.name)
        k = self.kept(d)
        idx = torch.randperm(d, generator=g, device=g.device)[:k].to(v.device)
        out = torch.zeros_like(v).index_copy_(0, idx, v.index_select(0, idx) * (d / k))
        return Compressed(out, self.message_nbytes(d, v.dtype))

    def message_nbytes(self, d: int, dtype: torch.dtype) -> int:
        k = self.kept(d)
        if self.shared_seed:
            return k * _width(dtype) + 8
        return k * (_width(dtype) + index_width(d))

    def omega(self, d: int) -> float:
        return d / self.kept(d) - 1.0


@dataclass(frozen=True, repr=True)
class QSGD(Compressor):
    """QSGD with s levels (Alistarh et al. 2017): unbiased, ω = min(d/s², √d/s).

    C(v)_i = ‖v‖₂ · sign(v_i) · ξ_i / s, where r_i = s|v_i|/‖v‖₂ and ξ_i is ⌊r_i⌋ + 1 with
    probability r_i − ⌊r_i⌋ and ⌊r_i⌋ otherwise (stochastic rounding, hence E ξ_i = r_i).

    Bytes: one norm at the value width + d sign bits + d level codes of ceil(log2(s + 1)) bits,
    bit-packed and rounded up to whole bytes. (Elias coding would be smaller for small s; we count
    the fixed-width format, which is what a simple implementation sends.)
    """

    levels: int = 1
    name = "qsgd"
    unbiased = True
    stochastic = True

    def __post_init__(self) -> None:
        if self.levels < 1:
            raise ValueError(f"levels must be >= 1, got {self.levels}")

    def compress(self, v: Tensor, generator: torch.Generator | None = None) -> Compressed:
        d = _check_vector(v)
        g = _require_generator(generator, self.name)
        s = self.levels
        u = _uniform(v, g)  # drawn even for v = 0 so that the stream advances alike
        norm = torch.linalg.vector_norm(v)
        nbytes = self.message_nbytes(d, v.dtype)
        if norm == 0:
            return Compressed(torch.zeros_like(v), nbytes)
        r = (v.abs() / norm * s).clamp(max=s)
        low = torch.floor(r)
        level = low + (u < (r - low)).to(v.dtype)
        return Compressed(norm * torch.sign(v) * level / s, nbytes)

    def message_nbytes(self, d: int, dtype: torch.dtype) -> int:
        code_bits = (self.levels).bit_length()  # == ceil(log2(s + 1))
        return _width(dtype) + math.ceil(d * (1 + code_bits) / 8)

    def omega(self, d: int) -> float:
        s = self.levels
        return min(d / s**2, math.sqrt(d) / s)


@dataclass(frozen=True, repr=True)
class ScaledSign(Compressor):
    """Scaled sign, C(v) = (‖v‖₁/d) · sign(v): deterministic and contractive, δ = 1/d.

    Exactly ‖C(v) − v‖² = ‖v‖₂² − ‖v‖₁²/d, i.e. a per-vector contraction
    δ(v) = ‖v‖₁² / (d‖v‖₂²) ∈ [1/d, 1] (Cauchy–Schwarz gives the upper end, a 1-sparse v the lower
    one). The declared constant must hold for every v, so ``delta(d)`` is the worst case 1/d.
    A zero coordinate is sent as +1 (one bit cannot encode three states); the identity above is
    unaffected because zero coordinates contribute nothing to ⟨sign(v), v⟩.

    Bytes: one scale at the value width + d sign bits, rounded up to whole bytes.
    """

    name = "sign"
    contractive = True

    def compress(self, v: Tensor, generator: torch.Generator | None = None) -> Compressed:
        d = _check_vector(v)
        scale = v.abs().sum() / d
        signs = torch.where(v >= 0, 1.0, -1.0).to(v.dtype)
        return Compressed(scale * signs, self.message_nbytes(d, v.dtype))

    def message_nbytes(self, d: int, dtype: torch.dtype) -> int:
        return _width(dtype) + math.ceil(d / 8)

    def delta(self, d: int) -> float:
        return 1.0 / d


@dataclass(frozen=True, repr=True)
class Natural(Compressor):
    """Natural compression (Horváth et al. 2019): unbiased rounding to powers of two, ω = 1/8.

    For 2^a ≤ |t| < 2^(a+1), t is sent as sign(t)·2^(a+1) with probability (|t| − 2^a)/2^a and
    as sign(t)·2^a otherwise, so E C(t) = t and Var = (|t| − 2^a)(2^(a+1) − |t|) ≤ t²/8 (the
    maximum is at |t| = (4/3)·2^a). Zero stays zero.

    Bytes: 9 bits per coordinate (sign + the 8-bit float32 exponent; the mantissa is dropped),
    rounded up to whole bytes, for float32 and float64 inputs alike. Float64 values outside the
    float32 exponent range would need more; they do not occur in training and are not clamped.
    """

    name = "natural"
    unbiased = True
    stochastic = True

    def compress(self, v: Tensor, generator: torch.Generator | None = None) -> Compressed:
        d = _check_vector(v)
        g = _require_generator(generator, self.name)
        u = _uniform(v, g)
        a = v.abs()
        _, exponent = torch.frexp(a)  # a = m · 2^e with m ∈ [0.5, 1), exact
        low = torch.ldexp(torch.full_like(a, 0.5), exponent)  # 2^(e-1) ≤ a < 2^e, exact
        p_up = (a - low) / low
        magnitude = torch.where(u < p_up, 2 * low, low)
        out = torch.where(a == 0, torch.zeros_like(v), torch.sign(v) * magnitude)
        return Compressed(out, self.message_nbytes(d, v.dtype))

    def message_nbytes(self, d: int, dtype: torch.dtype) -> int:
        return math.ceil(9 * d / 8)

    def omega(self, d: int) -> float:
        return 1.0 / 8.0


@dataclass(frozen=True, repr=True)
class ScaledToContractive(Compressor):
    """C'(v) = C(v)/(1 + ω) for an unbiased C: contractive with δ = 1/(1 + ω).

    Because E‖C(v)‖² = (1 + ω)‖v‖² at worst and E⟨C(v), v⟩ = ‖v‖²,
    E‖C(v)/(1+ω) − v‖² ≤ (1 − 1/(1+ω))‖v‖². This lets error feedback (which assumes a
    contractive C) run with rand-k, QSGD or natural compression. For rand-k it gives back the
    unscaled rand-k (δ = k/d). The message is the base compressor's, so bytes are unchanged. The
    result is no longer unbiased.
    """

    base: Compressor

    contractive = True

    def __post_init__(self) -> None:
        if not self.base.unbiased:
            raise ValueError(f"only unbiased compressors can be scaled, not {self.base.name}")

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"scaled_{self.base.name}"

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return self.base.stochastic

    def compress(self, v: Tensor, generator: torch.Generator | None = None) -> Compressed:
        d = _check_vector(v)
        inner = self.base.compress(v, generator)
        return Compressed(inner.value / (1.0 + self.base.omega(d)), inner.nbytes)

    def message_nbytes(self, d: int, dtype: torch.dtype) -> int:
        return self.base.message_nbytes(d, dtype)

    def delta(self, d: int) -> float:
        return 1.0 / (1.0 + self.base.omega(d))
