"""Study 1: CNN vs LCN vs FCN on the Dynamic Signal Distribution (Lahoti et al., ICLR 2024).

**Task (DSD).** Lahoti, Karp, Winston, Singh & Li, "Role of locality and weight sharing in
image-based tasks: a sample complexity separation between CNNs, LCNs, and FCNs" (ICLR 2024,
arXiv:2403.15707) model an image as k patches x = (x_1, ..., x_k) in R^d. A label y = ±1 and a
location i* ~ U[k] are drawn; every patch is isotropic noise N(0, σ²I_d), and the patch at i*
also carries the signal: x_{i*} = y·w* + ξ_{i*} with ‖w*‖ = 1. The signal may sit in any patch
(translation invariance) and occupies one patch (locality). For orthogonally equivariant
training, such as gradient descent from a rotation-invariant initialisation, the paper proves
that CNNs need Õ(σ²(k + d)) samples, LCNs Ω(σ²kd) (and Õ(σ²k(k + d))), FCNs Ω(σ²k²d); its upper
bounds assume σ = Õ(1/√k). Here k = d = 16, ‖w*‖ = 1 and σ = 1/√d = 1/√k, so a noise patch has
the signal's squared norm on average (E‖ξ‖² = dσ² = 1).

**Bayes rule (the oracle).** p(x | y) = (1/k)Σ_i N(x_i; y w*, σ²I) Π_{j≠i} N(x_j; 0, σ²I), and
the ratio p(x | +1)/p(x | −1) = Σ_i e^{⟨w*, x_i⟩/σ²} / Σ_i e^{−⟨w*, x_i⟩/σ²} (the ‖x_i‖² and
‖w*‖² terms cancel), so the Bayes classifier is sign(Σ_i sinh(⟨w*, x_i⟩/σ²)). Its accuracy
depends only on the k projections ⟨w*, x_i⟩, which are y·1[i = i*] + σz_i with z_i iid N(0, 1);
:func:`bayes_reference` estimates it from those scalars alone, a route independent of the
patch generator, and the generator's samples must agree with it.

**Networks** (M filters, ReLU, a hidden bias per unit, a linear readout):

* CNN: f(x) = Σ_i Σ_m a_m relu(⟨w_m, x_i⟩ + b_m), the M filters and readout shared by all patches;
* LCN: f(x) = Σ_i Σ_m a_{i,m} relu(⟨w_{i,m}, x_i⟩ + b_{i,m}), every patch its own filters;
* FCN: f(x) = Σ_j a_j relu(⟨w_j, x⟩ + b_j) on R^{kd}, width kM.

Each is the next one with a tying constraint removed (an FCN whose first layer is block
diagonal is an LCN; an LCN whose blocks are equal is a CNN), so the comparison isolates weight
sharing and locality. The hidden bias is needed: without it every unit is positively
homogeneous and cannot threshold the projection, and the best such CNN is essentially linear,
Σ_i⟨w*, x_i⟩ = y + N(0, kσ²), whose accuracy Φ(1/(σ√k)) = 0.84 at this σ stays below the 0.9
target (measured: 0.84 at n = 8192). The paper's upper-bound networks threshold with a bias too.

**Training.** Full-batch gradient descent with heavy-ball momentum (μ = 0.9; buffer
v ← μv + ∇L, θ ← θ − ηv, the convention of ``torch.optim.SGD``) on the logistic loss
mean log(1 + e^{−y f(x)}) for ``steps`` = 400 steps. Weights are Gaussian, N(0, 1/fan_in) for the
filters (fan_in d, or kd for the FCN) and N(0, 1/(kM)) for the readout; biases start at 0. The
Gaussian initialisation and plain gradient steps make training equivariant: rotating the
inputs by U (any U ∈ O(kd) for the FCN; a per-patch rotation and a patch permutation for the
LCN; the same rotation of every patch for the CNN) rotates every iterate's filters by U and
leaves the predictions unchanged. Adam's coordinate-wise scaling breaks this (the paper's
lower bounds do not cover it), which is why it is excluded; the test suite checks both.

The step size is ``lr`` = 1 for the per-patch (LCN) and dense (FCN) parameters and ``lr``/k for
the CNN, whose parameters are shared by k patches: the gradient of a shared filter is the sum of
its k per-patch gradients, so dividing by k gives each patch the step an LCN filter takes. This
is the rule, not a tuned constant. The base step was set on training loss alone (one seed): for the
LCN, η ∈ {0.1, 0.3, 1, 3} at n ∈ {128, 512, 2048, 8192} ends at a training loss of 0.31, 0.12,
0.03 and 0.19 at n = 8192 (η = 3 no longer converges), so η = 1; the FCN fits its training set
at every one of these steps, with test accuracies within 0.02 of each other; the CNN trains at
η/k ∈ {0.01, 0.03, 0.1} and dies (every unit inactive, f ≡ 0) at 0.2, and η/k = 1/16 lies inside.

**Measure.** n90 is the smallest n on the doubling grid {32, …, 8192} whose test accuracy is
≥ 0.9 (median over ``seeds`` when several are given). Every n of a seed uses the first n of one
draw of training samples (nested sets, as in a learning curve) and one initialisation per
architecture. An architecture that never reaches 0.9 on the grid has n90 ≥ 2·max(grid), the
next grid point; its ratio against a finite n90 is then a lower bound, which is what the
criterion needs (a ratio whose denominator is censored is undetermined and fails).

Deviations from the project's study list, and why:

* The Bayes accuracy criterion is ≥ 0.975, not ≥ 0.98: at σ = 1/√d the Bayes accuracy is
  0.9797 (four runs of :func:`bayes_reference` with 2·10⁶ draws each gave 0.97959 … 0.97969,
  standard error 1e-4 each), so no classifier, the Bayes rule included, reaches 0.98 on
  average; a test set of 10⁴ would pass or fail 0.98 by chance. The
  oracle is instead two-sided: the Bayes rule's accuracy on the generator's test set must match
  :func:`bayes_reference` within four standard errors (this catches a generator that drops the
  signal patch's noise, whose Bayes accuracy is 0.9995) and be at least 0.975.
* The lists leave the loss, the biases, the readout of the LCN and the step size open; they are
  fixed above with their reasons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import median

import numpy as np
import torch
from pydantic import Field, field_validator
from scipy.special import ndtr

from flsim.studies import (
    FigureSpec,
    StudyContext,
    StudyOutcome,
    StudyParams,
    at_least,
    between,
    register_study,
)

ARCHITECTURES = ("CNN", "LCN", "FCN")
CURVE_KEYS = ("test_accuracy", "train_loss")
Params = list[torch.Tensor]


class DsdParams(StudyParams):
    patches: int = Field(16, ge=2, le=64)  # k
    patch_dim: int = Field(16, ge=2, le=64)  # d
    filters: int = Field(8, ge=1, le=64)  # M
    sigma: float | None = Field(None, gt=0, le=10)  # None: 1/√d
    sample_sizes: list[int] = Field(default_factory=lambda: [32 * 2**i for i in range(9)], min_length=2)
    steps: int = Field(400, ge=1, le=100_000)
    lr: float = Field(1.0, gt=0, le=100)
    momentum: float = Field(0.9, ge=0, lt=1)
    test_size: int = Field(10_000, ge=100, le=1_000_000)
    reference_draws: int = Field(1_000_000, ge=1000, le=100_000_000)
    target_accuracy: float = Field(0.9, gt=0.5, lt=1)
    min_ratio: float = Field(2.0, ge=1)
    min_bayes_accuracy: float = Field(0.975, ge=0.5, le=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)

    @field_validator("sample_sizes")
    @classmethod
    def _increasing(cls, sizes: list[int]) -> list[int]:
        if any(n < 2 or n > 65_536 for n in sizes) or sorted(set(sizes)) != sizes:
            raise ValueError("sample sizes must be strictly increasing integers in [2, 65536]")
        return sizes

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list[int]) -> list[int]:
        if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be distinct non-negative integers")
        return seeds

    @property
    def noise(self) -> float:
        return self.sigma if self.sigma is not None else 1 / math.sqrt(self.patch_dim)


# -- the distribution and its Bayes rule ------------------------------------------------------------
def draw_dsd(
    rng: np.random.Generator, n: int, w_star: np.ndarray, patches: int, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """n DSD samples: patches (n, k, d) of N(0, σ²I) noise, with y·w* added at a uniform patch."""
    y = rng.choice(np.array([-1.0, 1.0]), size=n)
    x = sigma * rng.standard_normal((n, patches, w_star.size))
    x[np.arange(n), rng.integers(0, patches, size=n)] += y[:, None] * w_star
    return x, y


def unit_vector(rng: np.random.Generator, dim: int) -> np.ndarray:
    """w*: uniform on the unit sphere, so ‖w*‖ = 1."""
    w = rng.standard_normal(dim)
    return w / np.linalg.norm(w)


def bayes_predict(x: np.ndarray, w_star: np.ndarray, sigma: float) -> np.ndarray:
    """sign(Σ_i sinh(⟨w*, x_i⟩/σ²)), computed as a log-sum-exp difference so it cannot overflow."""
    s = x @ w_star / sigma**2
    return np.sign(np.logaddexp.reduce(s, axis=1) - np.logaddexp.reduce(-s, axis=1))


def bayes_reference(rng: np.random.Generator, draws: int, patches: int, sigma: float) -> float:
    """The Bayes rule's accuracy from the projections alone: s_i = (1[i = i*] + σz_i)/σ², y = +1.

    By the symmetry y → −y one label suffices, and by exchangeability of the patches the signal
    can sit in patch 0. This never builds a d-dimensional patch, so it checks the generator.
    """
    correct, chunk = 0, 100_000
    for start in range(0, draws, chunk):
        s = rng.standard_normal((min(chunk, draws - start), patches)) / sigma
        s[:, 0] += 1 / sigma**2
        correct += int(np.sum(np.logaddexp.reduce(s, axis=1) > np.logaddexp.reduce(-s, axis=1)))
    return correct / draws


def linear_rule_accuracy(patches: int, sigma: float) -> float:
    """Accuracy of sign(Σ_i⟨w*, x_i⟩) = sign(y + N(0, kσ²)): Φ(1/(σ√k)), the bias-free CNN's ceiling."""
    return float(ndtr(1 / (sigma * math.sqrt(patches))))


# -- the three networks -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Net:
    """One architecture: its parameter shapes, forward pass and step-size divisor."""

    name: str
    k: int
    d: int
    m: int

    def init(self, gen: torch.Generator) -> Params:
        """Gaussian filters N(0, 1/fan_in), readout N(0, 1/(kM)), zero biases."""
        k, d, m = self.k, self.d, self.m
        shapes = {"CNN": ((d, m), (m,), (m,)), "LCN": ((k, d, m), (k, 1, m), (k, m, 1))}
        w_shape, b_shape, a_shape = shapes.get(self.name, ((k * d, k * m), (k * m,), (k * m,)))
        fan_in = k * d if self.name == "FCN" else d
        w = torch.randn(w_shape, generator=gen) / math.sqrt(fan_in)
        a = torch.randn(a_shape, generator=gen) / math.sqrt(k * m)
        return [w, torch.zeros(b_shape), a]

    def forward(self, p: Params, x: torch.Tensor) -> torch.Tensor:
        """f(x) for x of shape (n, k, d)."""
        w, b, a = p
        n = x.shape[0]
        if self.name == "CNN":
            hidden = torch.relu(torch.addmm(b, x.reshape(n * self.k, self.d), w))
            return (hidden @ a).reshape(n, self.k).sum(1)
        if self.name == "LCN":  # x.transpose(0, 1): (k, n, d); one d×M block per patch
            return torch.bmm(torch.relu(torch.baddbmm(b, x.transpose(0, 1), w)), a).sum(0).squeeze(1)
        return torch.relu(torch.addmm(b, x.reshape(n, -1), w)) @ a

    def lr_scale(self) -> float:
        """1/k for the CNN, whose every parameter is shared by k patches; 1 otherwise."""
        return 1 / self.k if self.name == "CNN" else 1.0


def train_gd(
    net: Net, p: Params, x: torch.Tensor, y: torch.Tensor, lr: float, momentum: float, steps: int
) -> tuple[Params, float]:
    """Full-batch heavy-ball GD on the logistic loss; returns the parameters and the last loss."""
    p = [t.clone().requires_grad_(True) for t in p]
    velocity = [torch.zeros_like(t) for t in p]
    step = lr * net.lr_scale()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        loss = torch.nn.functional.softplus(-y * net.forward(p, x)).mean()
        grads = torch.autograd.grad(loss, p)
        with torch.no_grad():
            for t, v, g in zip(p, velocity, grads, strict=True):
                v.mul_(momentum).add_(g)
                t.sub_(step * v)
    return [t.detach() for t in p], float(loss.detach())


def accuracy(net: Net, p: Params, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction with sign(f(x)) = y (f = 0, a network with every unit dead, counts as wrong)."""
    with torch.no_grad():
        return float((torch.sign(net.forward(p, x)) == y).float().mean())


# -- one seed: the accuracy-vs-n curves -------------------------------------------------------------
def seed_curves(params: DsdParams, context: StudyContext) -> dict[str, object]:
    """Bayes accuracy and, per architecture, test accuracy and training loss at every n."""
    k, d, sigma = params.patches, params.patch_dim, params.noise
    rng = context.numpy_rng("data")
    w_star = unit_vector(context.numpy_rng("w_star"), d)
    x_train, y_train = draw_dsd(rng, params.sample_sizes[-1], w_star, k, sigma)
    x_test, y_test = draw_dsd(context.numpy_rng("test"), params.test_size, w_star, k, sigma)
    bayes = float(np.mean(bayes_predict(x_test, w_star, sigma) == y_test))
    xt, yt = torch.as_tensor(x_train, dtype=torch.float32), torch.as_tensor(y_train, dtype=torch.float32)
    xs, ys = torch.as_tensor(x_test, dtype=torch.float32), torch.as_tensor(y_test, dtype=torch.float32)
    curves: dict[str, dict[str, list[float]]] = {}
    for arch in ARCHITECTURES:
        net = Net(arch, k, d, params.filters)
        start = net.init(context.torch_generator(f"init_{arch}"))
        curve: dict[str, list[float]] = {"test_accuracy": [], "train_loss": []}
        for n in params.sample_sizes:
            p, loss = train_gd(net, start, xt[:n], yt[:n], params.lr, params.momentum, params.steps)
            curve["test_accuracy"].append(accuracy(net, p, xs, ys))
            curve["train_loss"].append(loss)
        curves[arch] = curve
    return {"bayes_accuracy": bayes, "curves": curves}


def n90(sizes: list[int], accuracies: list[float], target: float) -> float:
    """The smallest n with accuracy ≥ target; 2·max(sizes) (the next grid point) when none reaches it."""
    return float(next((n for n, a in zip(sizes, accuracies, strict=True) if a >= target), 2 * sizes[-1]))


def _ratio(numerator: float, denominator: float, censored_at: float) -> float:
    """n90 ratio; NaN when the denominator is censored (then the ratio is undetermined)."""
    return math.nan if denominator >= censored_at else numerator / denominator


@register_study(
    "dsd_locality",
    params=DsdParams,
    paper="Lahoti, Karp, Winston, Singh & Li, Role of locality and weight sharing in image-based "
    "tasks: a sample complexity separation between CNNs, LCNs, and FCNs, ICLR 2024",
    claim="on the Dynamic Signal Distribution, GD-trained CNNs need fewer samples than LCNs, and "
    "LCNs fewer than FCNs: n90(CNN) < n90(LCN) < n90(FCN), each ratio >= 2",
    figures=(
        FigureSpec("DSD: test accuracy vs training set size", "n", ("test_accuracy",),
                   series="architecture", log_x=True),
        FigureSpec("DSD: final training loss vs training set size", "n", ("train_loss",),
                   series="architecture", log_x=True, log_y=True),
    ),
    number=1,
)  # fmt: skip
def dsd_locality(params: DsdParams, context: StudyContext) -> StudyOutcome:
    sizes, target, censored = params.sample_sizes, params.target_accuracy, 2.0 * params.sample_sizes[-1]
    runs = [seed_curves(params, context.with_seed(s)) for s in params.seeds]
    n90s = {
        arch: median(n90(sizes, run["curves"][arch]["test_accuracy"], target) for run in runs)
        for arch in ARCHITECTURES
    }
    for arch in ARCHITECTURES:
        for i, n in enumerate(sizes):
            row = {key: median(run["curves"][arch][key][i] for run in runs) for key in CURVE_KEYS}
            context.record({"architecture": arch, "n": n, **row})
    bayes = median(run["bayes_accuracy"] for run in runs)
    draws = params.reference_draws
    reference = bayes_reference(context.numpy_rng("bayes_reference"), draws, params.patches, params.noise)
    tolerance = 4 * math.sqrt(reference * (1 - reference) * (1 / params.test_size + 1 / draws))
    criteria = {
        "n90_lcn_over_cnn": at_least(_ratio(n90s["LCN"], n90s["CNN"], censored), params.min_ratio),
        "n90_fcn_over_lcn": at_least(_ratio(n90s["FCN"], n90s["LCN"], censored), params.min_ratio),
        "bayes_accuracy": at_least(bayes, params.min_bayes_accuracy),
        "bayes_minus_reference": between(bayes - reference, -tolerance, tolerance),
    }
    results = {
        "n90": {a: (v if v < censored else None) for a, v in n90s.items()},
        "n90_censored_at": censored,
        "bayes_reference": reference,
        "linear_rule_accuracy": linear_rule_accuracy(params.patches, params.noise),
        "sigma": params.noise,
        "per_seed": {
            str(s): {"bayes_accuracy": run["bayes_accuracy"], "curves": run["curves"]}
            for s, run in zip(params.seeds, runs, strict=True)
        },
    }  # fmt: skip
    return StudyOutcome(criteria=criteria, results=results)
