"""Study 20: upsample or upweight? Temperature sampling vs scalarization (docs/studies/upsample_upweight.md).

Li, Xu, Tan, Murray & Khashabi, "Upsample or Upweight? Balanced Training on Heavily
Imbalanced Datasets", NAACL 2025 (arXiv 2410.04579). With domains of sizes n_i, natural
sampling draws domain i with probability q_i = n_i/Σn. Two ways to train on the balanced
mixture p_i ∝ n_i^{1/τ}:

* **Temperature sampling (upsample):** draw each batch element's domain from p, then an example
  of that domain uniformly; no loss weights.
* **Scalarization (upweight):** draw examples uniformly from the union (domain i with
  probability q_i) and weight each example's loss by p_i/q_i.

Both have the same expected minibatch gradient Σ_i p_i ∇L_i (L_i the mean loss of domain i), so
full-batch GD is identical (the paper's equivalence result). The per-draw second moments are
Σ_i p_i m_i and Σ_i (p_i²/q_i) m_i (m_i the mean squared per-example gradient norm of domain i);
since p_i/q_i > 1 exactly on the upsampled domains, scalarization has the larger variance. The
paper's consequence: temperature sampling converges faster on low-resource domains but at large
τ it repeats their few examples often enough to overfit. **Cooldown** starts with a high
temperature and lowers it during training. The paper describes it as heavily upsampling first
and gradually reducing the upsampling; the exact schedule here (τ linear in the step from
``cooldown_from`` to ``cooldown_to``) is this study's choice, not a constant from the paper.

**Setup (docs/studies/upsample_upweight.md (b)).** Five synthetic softmax-regression domains of sizes
5000/1000/200/50/10, batch 32, plain SGD with L2 weight decay. Each domain has inputs
x ~ N(μ_i, I) and labels drawn from softmax(x·(W* + Δ_i)) (shared teacher W* plus a domain
offset Δ_i); the model has shared weights W and one private block V_i per domain, logits
x·(W + V_i), so a 10-example domain can be memorised by its private block. Validation is a
fresh 500-example set per domain; the score is the mean of the five per-domain validation
cross-entropies (every domain counts equally, the balanced objective that upsampling targets).

**Criteria.** (i) The exact expected gradients of both samplers (sums over every example, for
every static τ at a random parameter point) agree to ``gradient_tolerance``. (ii) The measured
trace covariance of the batch gradient under temperature sampling is below scalarization's at
every static τ > 1 (max ratio ≤ 1); the closed form is recorded next to it. (iii) Steps for the
low-resource domains' (the two smallest) validation loss to cover 90% of the way from its start
to the best value either method reached, temperature sampling over scalarization at
``compare_tau`` (median over seeds) ≤ 1; a run that never gets there counts as the full run
length, so the ratio is then a bound. (iv) Cooldown's final validation score ≤ (1 + 1%) × the
best static temperature's (medians over seeds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field, field_validator

from flsim.algorithms.selection import temperature_distribution
from flsim.studies import (
    FigureSpec,
    StudyContext,
    StudyOutcome,
    StudyParams,
    at_most,
    register_study,
)


@dataclass(frozen=True)
class Domains:
    """Training and validation data of all domains, examples stacked in domain order."""

    x: np.ndarray  # (N, d)
    y: np.ndarray  # (N,) class labels
    domain: np.ndarray  # (N,) domain index of each example
    sizes: np.ndarray  # (K,) n_i
    val_x: list[np.ndarray]
    val_y: list[np.ndarray]
    classes: int

    @property
    def natural(self) -> np.ndarray:
        return self.sizes / self.sizes.sum()


def make_domains(
    rng: np.random.Generator, sizes: list[int], dim: int, classes: int, val_size: int
) -> Domains:
    """Shared teacher plus per-domain offsets and input means; labels sampled from the teacher."""
    teacher = rng.standard_normal((dim, classes)) * (3.0 / np.sqrt(dim))
    xs, ys, val_x, val_y = [], [], [], []
    for n in sizes:
        offset = rng.standard_normal((dim, classes)) * (1.5 / np.sqrt(dim))
        mean = rng.standard_normal(dim) * 0.5
        for count, xs_out, ys_out in ((n, xs, ys), (val_size, val_x, val_y)):
            x = mean + rng.standard_normal((count, dim))
            probs = _softmax(x @ (teacher + offset))
            labels = (probs.cumsum(axis=1) < rng.random((count, 1))).sum(axis=1)
            xs_out.append(x)
            ys_out.append(np.minimum(labels, classes - 1))
    domain = np.repeat(np.arange(len(sizes)), sizes)
    return Domains(np.vstack(xs), np.concatenate(ys), domain, np.array(sizes, float), val_x, val_y, classes)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def per_example_terms(params: np.ndarray, x: np.ndarray, y: np.ndarray, domain: np.ndarray) -> np.ndarray:
    """Residuals softmax − onehot of the model logits x·(W + V_domain); params = [W, V_1..V_K]."""
    logits = np.einsum("nd,ndc->nc", x, params[0][None] + params[1 + domain])
    residual = _softmax(logits)
    residual[np.arange(len(y)), y] -= 1.0
    return residual


def weighted_gradient(
    params: np.ndarray, x: np.ndarray, y: np.ndarray, domain: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """Σ_j weights_j ∇ℓ_j (cross-entropy): the shared block gets every term, V_i its own domain's."""
    residual = per_example_terms(params, x, y, domain) * weights[:, None]
    grad = np.zeros_like(params)
    grad[0] = x.T @ residual
    for k in np.unique(domain):
        mask = domain == k
        grad[1 + k] = x[mask].T @ residual[mask]
    return grad


def expected_gradient_temperature(params: np.ndarray, data: Domains, p: np.ndarray) -> np.ndarray:
    """Σ_i p_i ∇L_i, with ∇L_i computed domain by domain as the mean over its examples."""
    total = np.zeros_like(params)
    for k, n in enumerate(data.sizes.astype(int)):
        mask = data.domain == k
        total += p[k] * weighted_gradient(
            params, data.x[mask], data.y[mask], data.domain[mask], np.full(n, 1 / n)
        )
    return total


def expected_gradient_scalarized(params: np.ndarray, data: Domains, weights: np.ndarray) -> np.ndarray:
    """(1/N) Σ_j w_{d(j)} ∇ℓ_j: the expected gradient of natural sampling with loss weights w."""
    per_example = weights[data.domain] / len(data.y)
    return weighted_gradient(params, data.x, data.y, data.domain, per_example)


def draw_batch(
    rng: np.random.Generator, data: Domains, p: np.ndarray, batch: int, upweight: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Example indices and per-example multipliers (already divided by the batch size).

    ``upweight=False``: temperature sampling (domain from p, then uniform within it, weight 1).
    ``upweight=True``: scalarization (uniform over the union, weight p_i/q_i).
    """
    if upweight:
        index = rng.integers(len(data.y), size=batch)
        return index, (p / data.natural)[data.domain[index]] / batch
    starts = np.concatenate([[0], np.cumsum(data.sizes.astype(int))[:-1]])
    chosen = rng.choice(len(p), size=batch, p=p)
    index = starts[chosen] + (rng.random(batch) * data.sizes[chosen]).astype(int)
    return index, np.full(batch, 1.0 / batch)


def batch_gradient(params: np.ndarray, data: Domains, index: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return weighted_gradient(params, data.x[index], data.y[index], data.domain[index], weights)


def exact_batch_variance(
    params: np.ndarray, data: Domains, p: np.ndarray, batch: int, upweight: bool
) -> float:
    """tr Cov of the batch gradient: (E‖g₁‖² − ‖E g₁‖²)/B for one i.i.d. draw g₁ (closed form)."""
    residual = per_example_terms(params, data.x, data.y, data.domain)
    sq_norm = 2.0 * (data.x**2).sum(axis=1) * (residual**2).sum(axis=1)  # W and V_i get the same x·rᵀ
    domain_mean = np.bincount(data.domain, sq_norm) / data.sizes
    scale = p / data.natural if upweight else np.ones_like(p)
    second_moment = float(np.sum(p * scale * domain_mean))  # Σ p_i m_i, or Σ (p_i²/q_i) m_i
    mean = expected_gradient_temperature(params, data, p)
    return (second_moment - float((mean**2).sum())) / batch


def measured_batch_variance(
    rng: np.random.Generator,
    params: np.ndarray,
    data: Domains,
    p: np.ndarray,
    batch: int,
    draws: int,
    upweight: bool,
) -> float:
    grads = np.stack(
        [batch_gradient(params, data, *draw_batch(rng, data, p, batch, upweight)) for _ in range(draws)]
    )
    return float(((grads - grads.mean(axis=0)) ** 2).sum() / (draws - 1))


def validation_losses(params: np.ndarray, data: Domains) -> np.ndarray:
    """Mean cross-entropy on each domain's validation set."""
    losses = []
    for k, (x, y) in enumerate(zip(data.val_x, data.val_y, strict=True)):
        logits = x @ (params[0] + params[1 + k])
        logits -= logits.max(axis=1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        losses.append(-log_probs[np.arange(len(y)), y].mean())
    return np.array(losses)


@dataclass(frozen=True)
class Schedule:
    """A training run: the temperature at each step (fixed, or linear for Cooldown) and the sampler."""

    tau_start: float
    tau_end: float
    upweight: bool

    def tau(self, step: int, steps: int) -> float:
        return self.tau_start + (self.tau_end - self.tau_start) * step / max(steps - 1, 1)


def train(
    rng: np.random.Generator, data: Domains, schedule: Schedule, params: UpsampleUpweightParams
) -> tuple[list[int], np.ndarray]:
    """SGD with weight decay; returns evaluation steps and per-domain validation losses (rows)."""
    theta = np.zeros((1 + len(data.sizes), data.x.shape[1], data.classes))
    steps_seen, curve = [0], [validation_losses(theta, data)]
    for step in range(params.steps):
        p = temperature_distribution(data.sizes, schedule.tau(step, params.steps))
        grad = batch_gradient(theta, data, *draw_batch(rng, data, p, params.batch, schedule.upweight))
        theta -= params.lr * (grad + params.weight_decay * theta)
        if (step + 1) % params.eval_every == 0:
            steps_seen.append(step + 1)
            curve.append(validation_losses(theta, data))
    return steps_seen, np.array(curve)


def steps_to_reach(steps: list[int], curve: np.ndarray, target: float) -> float:
    """First step at which ``curve`` falls to ``target``, linearly interpolated; inf if never."""
    below = np.nonzero(curve <= target)[0]
    if len(below) == 0:
        return float("inf")
    i = int(below[0])
    if i == 0:
        return float(steps[0])
    frac = (curve[i - 1] - target) / (curve[i - 1] - curve[i])
    return float(steps[i - 1] + frac * (steps[i] - steps[i - 1]))


class UpsampleUpweightParams(StudyParams):
    sizes: list[int] = Field(default_factory=lambda: [5000, 1000, 200, 50, 10], min_length=2, max_length=20)
    dim: int = Field(8, ge=1, le=256)
    classes: int = Field(4, ge=2, le=64)
    val_size: int = Field(500, ge=10, le=100_000)
    batch: int = Field(32, ge=1, le=4096)
    steps: int = Field(3000, ge=10, le=1_000_000)
    lr: float = Field(0.2, gt=0, le=10.0)
    weight_decay: float = Field(1e-3, ge=0, le=1.0)
    eval_every: int = Field(50, ge=1, le=100_000)
    taus: list[float] = Field(default_factory=lambda: [1.0, 2.0, 5.0, 10.0, 100.0], min_length=2)
    compare_tau: float = Field(5.0, ge=1.0, le=1000.0)
    cooldown_from: float = Field(10.0, ge=1.0, le=1000.0)
    cooldown_to: float = Field(1.0, ge=1.0, le=1000.0)
    low_resource: int = Field(2, ge=1, le=20)
    variance_draws: int = Field(1000, ge=10, le=1_000_000)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1, max_length=100)
    gradient_tolerance: float = Field(1e-10, gt=0)
    cooldown_margin: float = Field(0.01, ge=0)

    @field_validator("sizes")
    @classmethod
    def _sizes_positive(cls, sizes: list[int]) -> list[int]:
        if any(n < 1 or n > 1_000_000 for n in sizes):
            raise ValueError("every domain size must be in [1, 1000000]")
        return sizes

    @field_validator("taus")
    @classmethod
    def _taus_in_range(cls, taus: list[float]) -> list[float]:
        if any(t < 1.0 or t > 1000.0 for t in taus) or taus != sorted(set(taus)):
            raise ValueError("taus must be increasing, distinct and within [1, 1000]")
        return taus


def _gradient_identity(rng: np.random.Generator, data: Domains, taus: list[float]) -> dict[str, float]:
    """Max |Σp_i∇L_i − (1/N)Σ_j (p/q)_{d(j)}∇ℓ_j| over the static τ at a random parameter point."""
    theta = rng.standard_normal((1 + len(data.sizes), data.x.shape[1], data.classes)) * 0.3
    gap, scale = 0.0, 0.0
    for tau in taus:
        p = temperature_distribution(data.sizes, tau)
        upsampled = expected_gradient_temperature(theta, data, p)
        upweighted = expected_gradient_scalarized(theta, data, p / data.natural)
        gap, scale = (
            max(gap, float(np.abs(upsampled - upweighted).max())),
            max(scale, float(np.abs(upsampled).max())),
        )
    return {"gap": gap, "scale": scale}


def _variance_check(
    rng: np.random.Generator, data: Domains, params: UpsampleUpweightParams, context: StudyContext
) -> dict[str, list[float]]:
    """Measured and closed-form batch-gradient variance of both samplers at every static τ > 1."""
    theta = rng.standard_normal((1 + len(data.sizes), data.x.shape[1], data.classes)) * 0.3
    out: dict[str, list[float]] = {
        "tau": [],
        "temperature": [],
        "scalarized": [],
        "temperature_exact": [],
        "scalarized_exact": [],
    }
    for tau in [t for t in params.taus if t > 1.0]:
        p = temperature_distribution(data.sizes, tau)
        out["tau"].append(tau)
        for name, upweight in (("temperature", False), ("scalarized", True)):
            out[name].append(
                measured_batch_variance(rng, theta, data, p, params.batch, params.variance_draws, upweight)
            )
            out[f"{name}_exact"].append(exact_batch_variance(theta, data, p, params.batch, upweight))
        context.record({"figure": "variance", **{k: v[-1] for k, v in out.items()}})
    return out


def _runs(params: UpsampleUpweightParams) -> dict[str, Schedule]:
    runs = {f"tau={t:g}": Schedule(t, t, upweight=False) for t in params.taus}
    runs[f"scalarized tau={params.compare_tau:g}"] = Schedule(
        params.compare_tau, params.compare_tau, upweight=True
    )
    runs["cooldown"] = Schedule(params.cooldown_from, params.cooldown_to, upweight=False)
    return runs


def _speed_ratio(steps: list[int], upsampled: np.ndarray, upweighted: np.ndarray) -> float:
    """Steps for the low-resource loss to cover 90% of start → best (either run): upsampled / upweighted.

    A run that never reaches the target is censored at the last step, so the ratio is then an
    upper bound (when upweighting never gets there) or a lower bound (when upsampling does not).
    """
    start = upsampled[0]
    target = start - 0.9 * (start - min(upsampled.min(), upweighted.min()))
    fast, slow = (min(steps_to_reach(steps, c, target), float(steps[-1])) for c in (upsampled, upweighted))
    return fast / slow


def _record_curves(
    context: StudyContext, steps: list[int], curves: dict[str, list[np.ndarray]], low: int
) -> None:
    """One row per (run, evaluation step): macro validation loss and low-resource loss, mean over seeds."""
    for name, per_seed in curves.items():
        mean_curve = np.mean(per_seed, axis=0)  # (evals, domains)
        for step, losses in zip(steps, mean_curve, strict=True):
            context.record(
                {
                    "figure": "validation",
                    "run": name,
                    "step": step,
                    "val_loss": float(losses.mean()),
                    "low_resource_loss": float(losses[-low:].mean()),
                }
            )


@register_study(
    "upsample_upweight",
    params=UpsampleUpweightParams,
    paper=(
        "Li, Xu, Tan, Murray & Khashabi, Upsample or Upweight? Balanced training on heavily "
        "imbalanced datasets, NAACL 2025"
    ),
    claim=(
        "same expected gradient; temperature sampling has lower variance and converges faster; "
        "Cooldown ~ best static tau"
    ),
    figures=(
        FigureSpec(
            "Validation loss (mean over domains)",
            "step",
            ("val_loss",),
            series="run",
            where={"figure": "validation"},
        ),
        FigureSpec(
            "Low-resource validation loss",
            "step",
            ("low_resource_loss",),
            series="run",
            where={"figure": "validation"},
        ),
        FigureSpec(
            "Batch-gradient variance",
            "tau",
            ("temperature", "scalarized", "temperature_exact", "scalarized_exact"),
            log_x=True,
            log_y=True,
            where={"figure": "variance"},
        ),
    ),
    number=20,
)
def upsample_upweight(params: UpsampleUpweightParams, context: StudyContext) -> StudyOutcome:
    runs, low = _runs(params), min(params.low_resource, len(params.sizes))
    curves: dict[str, list[np.ndarray]] = {name: [] for name in runs}
    identity_gap, identity_scale, ratios, variance = 0.0, 0.0, [], {}
    for seed in params.seeds:
        ctx = context.with_seed(seed)
        data = make_domains(ctx.numpy_rng("data"), params.sizes, params.dim, params.classes, params.val_size)
        identity = _gradient_identity(ctx.numpy_rng("identity"), data, params.taus)
        identity_gap, identity_scale = (
            max(identity_gap, identity["gap"]),
            max(identity_scale, identity["scale"]),
        )
        if seed == params.seeds[0]:
            variance = _variance_check(ctx.numpy_rng("variance"), data, params, context)
        for i, (name, schedule) in enumerate(runs.items()):
            steps, curve = train(ctx.numpy_rng("sgd", i), data, schedule, params)
            curves[name].append(curve)
        lows = {name: curves[name][-1][:, -low:].mean(axis=1) for name in runs}
        ratios.append(
            _speed_ratio(
                steps, lows[f"tau={params.compare_tau:g}"], lows[f"scalarized tau={params.compare_tau:g}"]
            )
        )
    _record_curves(context, steps, curves, low)
    final = {name: float(np.median([c[-1].mean() for c in per_seed])) for name, per_seed in curves.items()}
    static = {t: final[f"tau={t:g}"] for t in params.taus}
    best_tau = min(static, key=static.get)
    variance_ratio = max(m / s for m, s in zip(variance["temperature"], variance["scalarized"], strict=True))
    return StudyOutcome(
        criteria={
            "full_batch_gradient_gap": at_most(identity_gap, params.gradient_tolerance),
            "variance_ratio_temperature_over_scalarized": at_most(variance_ratio, 1.0),
            "low_resource_steps_ratio": at_most(float(np.median(ratios)), 1.0),
            "cooldown_over_best_static": at_most(
                final["cooldown"] / static[best_tau], 1.0 + params.cooldown_margin
            ),
        },
        results={
            "gradient_scale": identity_scale,
            "variance": variance,
            "low_resource_steps_ratio_per_seed": ratios,
            "final_val_loss": final,
            "best_static_tau": best_tau,
            "natural_distribution": (np.array(params.sizes) / sum(params.sizes)).tolist(),
        },
    )
