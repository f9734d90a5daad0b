"""Client selection beyond uniform sampling: temperature, importance weights, DPPs.

The mathematics only; :mod:`flsim.engine.client_selection` applies it to a run's rounds.

**Temperature sampling** (Li et al., "Upsample or Upweight?", NAACL 2025, with clients in the
role of domains). With client sizes n_k the target mixture is p_k ∝ n_k^{1/τ} (τ = 1: the
natural q_k = n_k/n; τ → ∞: uniform). A round makes m independent draws.

* ``draws`` (upsampling): the draws come from p and each counts 1/m, so a client drawn c_k
  times has weight c_k/m and the expected server step is Σ_k p_k Δ_k.
* ``importance`` (scalarisation, "upweighting"): the draws come from q and each is weighted
  p_k/q_k, so the weight is c_k p_k/(m q_k) and the expected step is again Σ_k p_k Δ_k; the
  weights sum to one only on average. Same mean, different variance: the paper's point.

**Determinantal point processes** (Kulesza & Taskar, "Determinantal Point Processes for
Machine Learning", 2012). An L-ensemble draws S ⊆ {1..N} with P(S) ∝ det(L_S); its marginal
kernel is K = L(L + I)⁻¹, so P(k ∈ S) = K_kk and, since det(L_{ij}) = L_ii L_jj − L_ij²,
similar clients rarely come together. The exact spectral sampler (their Algorithm 1, after
Hough, Krishnapur, Peres & Virág): with L = Σ_n λ_n v_n v_nᵀ keep eigenvector n with
probability λ_n/(λ_n + 1), then draw the projection DPP spanned by the kept vectors. The
k-DPP (exactly k clients, P(S) ∝ det(L_S) over |S| = k) keeps exactly k eigenvectors, chosen
with the elementary symmetric polynomials e_l of the eigenvalues (their Algorithm 8).
"""

from __future__ import annotations

import math

import numpy as np

#: A diagonal added to the similarity kernel: clients with equal histograms stay possible
#: together (with tiny probability), so a k-DPP exists for every k ≤ N.
KERNEL_RIDGE = 1e-6


# --------------------------------------------------------------------------- temperature


def temperature_distribution(sizes: np.ndarray, tau: float) -> np.ndarray:
    """p_i ∝ n_i^{1/τ}: τ = 1 is natural sampling, τ → ∞ uniform over domains."""
    logits = np.log(sizes) / tau
    p = np.exp(logits - logits.max())
    return p / p.sum()


def draw_weighted(
    rng: np.random.Generator, draw_from: np.ndarray, target: np.ndarray, m: int
) -> dict[int, float]:
    """m independent draws from ``draw_from``; each weighs target/draw_from of its client, / m.

    Returns {client: weight} over the distinct clients drawn (a client drawn c times weighs
    c times as much). With ``draw_from`` = ``target`` every draw weighs 1/m.
    """
    return draw_weights(draw_cumulative(rng, np.cumsum(draw_from), m), draw_from, target)


def draw_weights(drawn: np.ndarray, draw_from: np.ndarray, target: np.ndarray) -> dict[int, float]:
    """{client: c_k · (target_k / draw_from_k) / m} for the m draws ``drawn`` (c_k: times drawn)."""
    clients, counts = np.unique(drawn, return_counts=True)
    ratio = target[clients] / draw_from[clients]
    m = len(drawn)
    return {int(k): float(c * r / m) for k, c, r in zip(clients, counts, ratio, strict=True)}


# --------------------------------------------------------------------------- DPP


def draw_cumulative(
    rng: np.random.Generator, cumulative: np.ndarray, size: int | tuple[int, ...]
) -> np.ndarray:
    """Indices drawn from unnormalised cumulative weights (inverse-CDF, one uniform each)."""
    return np.searchsorted(cumulative, rng.random(size) * cumulative[-1], side="right")


def _orthogonalise(vectors: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """Rows of ``vectors`` minus their components in each row's orthonormal ``frame`` (twice, for
    numerical orthogonality), normalised."""
    for _ in range(2):
        vectors = vectors - np.einsum("bmt,bt->bm", frame, np.einsum("bmt,bm->bt", frame, vectors))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def projection_dpp(
    rng: np.random.Generator, q: np.ndarray, draws: int, size: int | None = None
) -> np.ndarray:
    """``draws`` exact draws of the projection DPP with kernel QQᵀ, shape (draws, size).

    HKPV chain rule: point t is drawn with probability proportional to the conditional kernel
    diagonal r_i = ‖q_i‖² − ‖Eᵀq_i‖², where E is an orthonormal basis (in Rᵐ) of the rows already
    chosen, so Σ_i r_i = m − t and the points are distinct. Instead of updating r over the whole
    grid (N·m work per point), each step samples r by rejection from the leverage scores h_i = ‖q_i‖²
    (accept with probability r_i/h_i ≤ 1; mean m/(m − t) proposals), which is exact and costs m·t per
    proposal. ``size`` < m stops the chain early (its first points, in order).
    """
    m = q.shape[1]
    size = m if size is None else size
    leverage = np.einsum("ij,ij->i", q, q)
    cumulative = np.cumsum(leverage)
    frame = np.zeros((draws, m, size))
    chosen = np.empty((draws, size), dtype=np.int64)
    for t in range(size):
        pending = np.arange(draws)
        proposals = 2 * math.ceil(m / (m - t)) + 2
        while pending.size:
            candidates = draw_cumulative(rng, cumulative, (pending.size, proposals))
            seen = np.einsum("pkm,pmt->pkt", q[candidates], frame[pending, :, :t])
            keep = 1.0 - np.einsum("pkt,pkt->pk", seen, seen) / leverage[candidates]
            accepted = rng.random(candidates.shape) < keep
            done = accepted.any(axis=1)
            rows, first = pending[done], accepted[done].argmax(axis=1)
            chosen[rows, t] = candidates[done, first]
            frame[rows, :, t] = _orthogonalise(q[chosen[rows, t]], frame[rows, :, :t])
            pending = pending[~done]
    return chosen


def label_histograms(labels: list[np.ndarray], classes: int) -> np.ndarray:
    """Each client's label frequencies (rows sum to one), shape (N, classes)."""
    counts = np.stack([np.bincount(y, minlength=classes)[:classes] for y in labels]).astype(np.float64)
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)


def rbf_kernel(features: np.ndarray, bandwidth: float | None) -> np.ndarray:
    """L_ij = exp(−‖f_i − f_j‖² / 2σ²) + ridge·δ_ij; σ defaults to the median pairwise distance."""
    squared = np.maximum(((features[:, None, :] - features[None, :, :]) ** 2).sum(axis=2), 0.0)
    if bandwidth is None:
        distances = np.sqrt(squared[np.triu_indices(len(features), k=1)])
        positive = distances[distances > 0]
        bandwidth = float(np.median(positive)) if positive.size else 1.0
    return np.exp(-squared / (2.0 * bandwidth**2)) + KERNEL_RIDGE * np.eye(len(features))


def log_elementary_symmetric(eigenvalues: np.ndarray, k: int) -> np.ndarray:
    """log e_l(λ_1..λ_n) for l ≤ k, n ≤ N, shape (k + 1, N + 1), by e_l^n = e_l^{n−1} + λ_n e_{l−1}^{n−1}.

    Kept in logarithms: e_k of a few hundred eigenvalues overflows a float64.
    """
    n = len(eigenvalues)
    table = np.full((k + 1, n + 1), -np.inf)
    table[0, :] = 0.0
    logs = np.log(np.maximum(eigenvalues, 1e-300))
    for j in range(1, n + 1):
        table[1:, j] = np.logaddexp(table[1:, j - 1], logs[j - 1] + table[:-1, j - 1])
    return table


def scale_for_expected_size(eigenvalues: np.ndarray, k: float) -> float:
    """α with Σ_n αλ_n/(αλ_n + 1) = k: the L-ensemble αL has k points on average (bisection)."""
    low, high = -60.0, 60.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        alpha = math.exp(mid)
        if float(np.sum(alpha * eigenvalues / (alpha * eigenvalues + 1.0))) < k:
            low = mid
        else:
            high = mid
    return math.exp(0.5 * (low + high))


class DppSampler:
    """Exact draws of an L-ensemble DPP or a k-DPP, from one eigendecomposition of L."""

    def __init__(self, kernel: np.ndarray, k: int, fixed_size: bool) -> None:
        eigenvalues, self.vectors = np.linalg.eigh(kernel)
        self.eigenvalues = np.maximum(eigenvalues, 0.0)
        self.k = k
        self.fixed_size = fixed_size
        #: The L-ensemble's scale (1 for the k-DPP, where a scale cancels in det(L_S)/e_k).
        self.alpha = 1.0 if fixed_size else scale_for_expected_size(self.eigenvalues, k)
        self._log_e = log_elementary_symmetric(self.eigenvalues, k) if fixed_size else None

    def marginal_kernel(self) -> np.ndarray:
        """K = αL(αL + I)⁻¹ of the L-ensemble, in the eigenbasis: P(i ∈ S) = K_ii."""
        scaled = self.alpha * self.eigenvalues
        return (self.vectors * (scaled / (scaled + 1.0))) @ self.vectors.T

    def _eigenvectors_k(self, rng: np.random.Generator) -> np.ndarray:
        """Exactly k eigenvector indices, index n kept w.p. λ_n e_{l−1}^{n−1} / e_l^n (Alg. 8)."""
        assert self._log_e is not None
        logs = np.log(np.maximum(self.eigenvalues, 1e-300))
        kept, remaining = [], self.k
        for n in range(len(self.eigenvalues), 0, -1):
            if remaining == 0:
                break
            log_p = logs[n - 1] + self._log_e[remaining - 1, n - 1] - self._log_e[remaining, n]
            if rng.random() < math.exp(min(log_p, 0.0)):
                kept.append(n - 1)
                remaining -= 1
        return np.array(sorted(kept), dtype=np.int64)

    def draw(self, rng: np.random.Generator) -> list[int]:
        """One draw, sorted; the L-ensemble may draw the empty set (the caller redraws)."""
        if self.fixed_size:
            kept = self._eigenvectors_k(rng)
        else:
            scaled = self.alpha * self.eigenvalues
            kept = np.flatnonzero(rng.random(len(scaled)) < scaled / (scaled + 1.0))
        if kept.size == 0:
            return []
        return sorted(int(i) for i in projection_dpp(rng, self.vectors[:, kept], 1)[0])
