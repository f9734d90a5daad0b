"""Study 15: self-normalizing networks (SELU) keep deep activations at mean 0, variance 1.

Klambauer, Unterthiner, Mayr & Hochreiter, "Self-Normalizing Neural Networks", NeurIPS 2017
(arXiv:1706.02515); official code github.com/bioinf-jku/SNNs (``selu.py``,
``getSELUparameters.ipynb``).

Method. selu(x) = λ·x for x > 0 and λ·α·(eˣ − 1) otherwise. For a layer whose n inputs have
mean μ and variance ν, and whose weights have ω = Σwᵢ and τ = Σwᵢ², the pre-activation is
approximately N(μω, ντ), and the activation's mean and variance are a map (μ, ν) ↦ (μ̃, ν̃)
(paper eqs. (4)-(5); closed form in :func:`selu_moments`). λ and α are chosen so that
(0, 1) is a fixed point of that map for ω = 0, τ = 1. The paper proves this fixed point
attracting: the map's Jacobian there has a spectral norm below 1 (paper §3). LeCun-normal
initialisation, wᵢ ~ N(0, 1/n), gives ω ≈ 0 and τ ≈ 1 in expectation, so activations are
pulled towards mean 0 and variance 1 layer after layer, with no normalisation layer.

Constants (all from the paper and the official ``selu.py``):

* λ = 1.0507009873554804934193349852946 and α = 1.6732632423543772848170429916717 solve
  E[selu(z)] = 0 and E[selu(z)²] = 1 for z ~ N(0, 1). ``tests/studies/test_selu.py``
  re-derives them from those equations.
* Alpha dropout (paper §4) sets dropped units to α′ = −λα, the value selu saturates to.
  It then applies x ↦ a·x + b with a = (q + α′²q(1−q))^(−1/2) and b = −a(1−q)α′, where q is
  the keep probability, so mean 0 and variance 1 are preserved.
* The dropout rate is 0.05, the rate of the official PyTorch MLP tutorial. The paper
  recommends 1 − q ∈ {0.05, 0.1}.

Setup (the specification's part (b)).

* Data: digits, breast_cancer and wine, all bundled with scikit-learn. Each has a seeded
  random 80/20 split per seed, and features standardised with the training split's mean and
  standard deviation (the paper's step "scale inputs to zero mean and unit variance").
* Networks: 32 hidden layers of width 64, then a linear output layer.
  - ``selu``: SELU, LeCun-normal weights, zero biases, alpha dropout after every hidden
    layer (as in the official MLP tutorial).
  - ``selu_nodrop``: the same without dropout. Not in the spec; reported without gating, to
    separate the activation from the dropout.
  - ``relu``: ReLU with He-normal weights N(0, 2/n).
  - ``relu_bn``: the ``relu`` network with BatchNorm1d before each ReLU.
* Training: plain SGD (the optimizer of the official PyTorch tutorial) with lr 0.01,
  batch 64 and cross-entropy, for 60 epochs. The setting is the same for every model and
  dataset and was not tuned. Each seed's models start from their own seeded draws and see the same
  batch order.
* Seeds: one (``seeds: [0]``). One seed costs about 54 s of CPU; three would exceed the
  90 s budget.
* At initialisation, in eval mode (no dropout), the per-layer mean and variance of the
  activations are pooled over units and training samples of digits. They are recorded for
  ``selu``, for ``relu`` with LeCun init (``relu_lecun``: variance halves per layer), and
  for ``relu``.

Criteria (the specification's part (c); accuracies are medians over ``seeds`` of the final
test accuracy, in percentage points):

* ``init_selu_abs_mean_last_layer`` ≤ 0.1, at layer ``depth`` = 32;
* ``init_selu_variance_last_layer`` ∈ [0.8, 1.2];
* ``init_relu_lecun_variance_last_layer`` ≤ 1e-3;
* ``digits_selu_minus_relu`` ≥ 3 pt;
* ``digits_selu_minus_relu_bn`` ≥ −2 pt;
* reported without gating: the same two comparisons on breast_cancer and wine (the spec
  states them for digits), and the same comparisons for ``selu_nodrop``;
* the analytic fixed point: the residual of the moment map at (0, 1) (≤ 1e-12) and the
  spectral norm of its Jacobian there (< 1). Both are computed from the closed form.

Deviation, recorded. A first run used SGD with momentum 0.9, chosen before any run. Every
model was unstable: SELU on digits collapsed to chance (12.8 %), ReLU reached 40.7 % and
ReLU+BN 80.2 %. Plain SGD (the paper's optimizer) replaced it once, and was not changed
again after its result.

Known outcome (docs/studies/selu.md). With alpha dropout at rate 0.05 after each of the 32 layers, SELU
does not train on digits (19 %). Without dropout it trains (92 %, +3.6 pt over ReLU). The
injected noise compounds over 32 layers; the mean/variance correction holds, but the
signal does not survive. The gate reports the failure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from flsim.studies import (
    Criterion,
    FigureSpec,
    StudyContext,
    StudyOutcome,
    StudyParams,
    at_least,
    at_most,
    between,
    register_study,
)
from flsim.tasks.layers import SELU, SELU_ALPHA, SELU_LAMBDA, AlphaDropout, fan_in_normal_
from flsim.tasks.pooled import load_digits_data

DATASETS = ("digits", "breast_cancer", "wine")
MODELS = ("selu", "selu_nodrop", "relu", "relu_bn")


# --------------------------------------------------------------------------- the moment map


def selu_moments(
    mean: float, var: float, alpha: float = SELU_ALPHA, scale: float = SELU_LAMBDA
) -> tuple[float, float]:
    """(E[selu(z)], Var[selu(z)]) for z ~ N(mean, var), in closed form (paper eqs. (4)-(5)).

    Written with erfc as in the official ``getSELUparameters.ipynb``.
    """
    s2 = var
    root = math.sqrt(2.0 * s2)
    tail = math.erfc(mean / root)
    gauss = math.exp(-(mean**2) / (2.0 * s2))
    e1 = math.exp(mean + s2 / 2.0) * math.erfc((mean + s2) / root)
    e2 = math.exp(2.0 * (mean + s2)) * math.erfc((mean + 2.0 * s2) / root)
    first = (
        0.5
        * scale
        * (mean * (2.0 - tail) + gauss * math.sqrt(2.0 * s2 / math.pi) - alpha * tail + alpha * e1)
    )
    second = (
        0.5
        * scale**2
        * (
            (mean**2 + s2) * (2.0 - tail)
            + gauss * math.sqrt(2.0 * s2 / math.pi) * mean
            + alpha**2 * (tail - 2.0 * e1 + e2)
        )
    )
    return first, second - first**2


def moment_map(
    mu: float, nu: float, omega: float = 0.0, tau: float = 1.0, alpha: float = SELU_ALPHA
) -> tuple[float, float]:
    """The paper's g: (μ, ν) ↦ (μ̃, ν̃) for inputs of mean μ, variance ν and weights (ω, τ)."""
    return selu_moments(mu * omega, nu * tau, alpha)


def moment_map_jacobian(mu: float, nu: float, omega: float = 0.0, tau: float = 1.0) -> np.ndarray:
    """Jacobian of :func:`moment_map` in (μ, ν), by central differences (step 1e-6)."""
    h = 1e-6
    columns = []
    for d_mu, d_nu in ((h, 0.0), (0.0, h)):
        plus = np.array(moment_map(mu + d_mu, nu + d_nu, omega, tau))
        minus = np.array(moment_map(mu - d_mu, nu - d_nu, omega, tau))
        columns.append((plus - minus) / (2.0 * h))
    return np.stack(columns, axis=1)


# --------------------------------------------------------------------------- layers


def _dense(fan_in: int, fan_out: int, gain: float, generator: torch.Generator) -> nn.Linear:
    """Linear layer with N(0, gain/fan_in) weights (LeCun gain 1, He gain 2) and zero bias."""
    layer = nn.utils.skip_init(nn.Linear, fan_in, fan_out)
    fan_in_normal_(layer, gain, generator)
    return layer


def deep_mlp(
    kind: str, sizes: tuple[int, int, int, int], dropout: float, generator: torch.Generator
) -> nn.Sequential:
    """``depth`` hidden layers of one ``kind``: selu, selu_nodrop, relu, relu_bn or relu_lecun.

    ``sizes`` is (inputs, width, depth, classes). ``generator`` draws the weights and then
    the alpha-dropout masks.
    """
    fan_in, width, depth, classes = sizes
    gain = 1.0 if kind in ("selu", "selu_nodrop", "relu_lecun") else 2.0
    layers: list[nn.Module] = []
    for index in range(depth):
        layers.append(_dense(fan_in if index == 0 else width, width, gain, generator))
        if kind == "relu_bn":
            layers.append(nn.BatchNorm1d(width))
        if kind == "selu":
            layers += [SELU(), AlphaDropout(dropout, generator)]
        elif kind == "selu_nodrop":
            layers.append(SELU())
        else:
            layers.append(nn.ReLU())
    layers.append(_dense(width, classes, gain, generator))
    return nn.Sequential(*layers)


@torch.no_grad()
def layer_statistics(model: nn.Sequential, x: Tensor) -> list[tuple[float, float]]:
    """(mean, variance) of each hidden layer's activations, pooled over units and samples (eval mode)."""
    model.eval()
    out = []
    for module in list(model)[:-1]:
        x = module(x)
        if isinstance(module, SELU | nn.ReLU):
            flat = x.double().flatten()
            out.append((float(flat.mean()), float(flat.var(correction=0))))
    return out


# --------------------------------------------------------------------------- data and training


@dataclass(frozen=True)
class Split:
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    classes: int


def load_dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Features (float64) and integer labels of a scikit-learn bundled dataset."""
    if name == "digits":
        data = load_digits_data()
        return data.x.astype(np.float64), data.y
    from sklearn.datasets import load_breast_cancer, load_wine

    bunch = load_breast_cancer() if name == "breast_cancer" else load_wine()
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)


def standardized_split(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, test_fraction: float) -> Split:
    """Seeded random split; features z-scored with the training split's statistics (float32)."""
    order = rng.permutation(len(y))
    n_test = max(1, round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    std = np.where(std > 0, std, 1.0)  # constant pixels stay 0 rather than dividing by zero

    def scaled(rows: np.ndarray) -> Tensor:
        return torch.from_numpy(((x[rows] - mean) / std).astype(np.float32))

    labels = torch.from_numpy(y.astype(np.int64))
    return Split(scaled(train), labels[train], scaled(test), labels[test], int(y.max()) + 1)


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    model.eval()
    return 100.0 * float((model(x).argmax(dim=1) == y).double().mean())


class SeluParams(StudyParams):
    seeds: list[Annotated[int, Field(ge=0)]] = Field(default=[0], min_length=1, max_length=64)
    datasets: list[Literal["digits", "breast_cancer", "wine"]] = Field(default=list(DATASETS), min_length=1)
    epochs: int = Field(60, ge=1, le=1000)
    depth: int = Field(32, ge=1, le=128)
    width: int = Field(64, ge=2, le=1024)
    batch_size: int = Field(64, ge=2, le=1024)
    lr: float = Field(0.01, gt=0.0, le=10.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    margin_over_relu: float = Field(3.0, ge=-100.0, le=100.0)
    margin_below_bn: float = Field(2.0, ge=0.0, le=100.0)


def train_curve(
    model: nn.Sequential, split: Split, params: SeluParams, context: StudyContext, dataset: str
) -> list[float]:
    """SGD with momentum; returns the test accuracy after every epoch.

    The batch order of an epoch depends only on (seed, dataset, epoch): all models see the same batches.
    """
    optimizer = torch.optim.SGD(model.parameters(), lr=params.lr, momentum=params.momentum)
    curve = []
    batch = params.batch_size
    for epoch in range(params.epochs):
        model.train()
        shuffle = context.torch_generator(f"shuffle.{dataset}", 0, epoch)
        order = torch.randperm(len(split.y_train), generator=shuffle)
        for start in range(0, len(order) - batch + 1, batch):
            index = order[start : start + batch]
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(split.x_train[index]), split.y_train[index]).backward()
            optimizer.step()
        curve.append(accuracy(model, split.x_test, split.y_test))
    return curve


def run_dataset(name: str, params: SeluParams, context: StudyContext) -> dict[str, list[float]]:
    """Accuracy curves of the three models on one dataset, for the context's seed."""
    x, y = load_dataset(name)
    split = standardized_split(x, y, context.numpy_rng("split", DATASETS.index(name)), params.test_fraction)
    sizes = (split.x_train.shape[1], params.width, params.depth, split.classes)
    curves = {}
    for index, kind in enumerate(MODELS):
        generator = context.torch_generator(f"model.{name}", index)
        model = deep_mlp(kind, sizes, params.dropout, generator)
        curves[kind] = train_curve(model, split, params, context, name)
    return curves


def init_statistics(params: SeluParams, context: StudyContext) -> dict[str, list[tuple[float, float]]]:
    """Per-layer (mean, variance) at initialisation on the standardised digits training split."""
    x, y = load_dataset("digits")
    split = standardized_split(x, y, context.numpy_rng("split", 0), params.test_fraction)
    sizes = (split.x_train.shape[1], params.width, params.depth, split.classes)
    return {
        kind: layer_statistics(
            deep_mlp(kind, sizes, params.dropout, context.torch_generator("init", i)), split.x_train
        )
        for i, kind in enumerate(("selu", "relu_lecun", "relu"))
    }


def record_init(stats: dict[str, list[tuple[float, float]]], context: StudyContext) -> None:
    for kind, layers in stats.items():
        for layer, (mean, var) in enumerate(layers, start=1):
            context.record(
                {"figure": "init", "model": kind, "layer": layer, "init_mean": mean, "init_variance": var}
            )


def record_curves(
    runs: list[dict[str, dict[str, list[float]]]], params: SeluParams, context: StudyContext
) -> None:
    """One row per (dataset, model, epoch): the median test accuracy over seeds."""
    for name in params.datasets:
        for kind in MODELS:
            for epoch in range(params.epochs):
                value = float(np.median([run[name][kind][epoch] for run in runs]))
                context.record(
                    {
                        "figure": "accuracy",
                        "dataset": name,
                        "model": kind,
                        "epoch": epoch + 1,
                        "test_accuracy": value,
                    }
                )


def fixed_point_checks() -> dict[str, float]:
    """Residual of the moment map at (0, 1) with ω = 0, τ = 1, and its Jacobian's norms there."""
    mu, nu = moment_map(0.0, 1.0)
    jacobian = moment_map_jacobian(0.0, 1.0)
    return {
        "fixed_point_residual": max(abs(mu), abs(nu - 1.0)),
        "jacobian_spectral_norm": float(np.linalg.norm(jacobian, 2)),
        "jacobian_spectral_radius": float(max(abs(np.linalg.eigvals(jacobian)))),
    }


def criteria(
    stats: dict[str, list[tuple[float, float]]],
    gaps: dict[str, dict[tuple[str, str], float]],
    analytic: dict[str, float],
    params: SeluParams,
) -> dict[str, Criterion]:
    """Init statistics at the last layer, accuracy gaps (gating on digits), the analytic fixed point."""
    selu_mean, selu_var = stats["selu"][-1]
    out = {
        "init_selu_abs_mean_last_layer": at_most(abs(selu_mean), 0.1),
        "init_selu_variance_last_layer": between(selu_var, 0.8, 1.2),
        "init_relu_lecun_variance_last_layer": at_most(stats["relu_lecun"][-1][1], 1e-3),
        "fixed_point_residual": at_most(analytic["fixed_point_residual"], 1e-12),
        "jacobian_spectral_norm": at_most(analytic["jacobian_spectral_norm"], 1.0 - 1e-9),
    }
    for name, gap in gaps.items():
        gate = name == "digits"
        out[f"{name}_selu_minus_relu"] = at_least(gap["selu", "relu"], params.margin_over_relu, gate=gate)
        out[f"{name}_selu_minus_relu_bn"] = at_least(
            gap["selu", "relu_bn"], -params.margin_below_bn, gate=gate
        )
        out[f"{name}_selu_nodrop_minus_relu"] = at_least(
            gap["selu_nodrop", "relu"], params.margin_over_relu, gate=False
        )
        out[f"{name}_selu_nodrop_minus_relu_bn"] = at_least(
            gap["selu_nodrop", "relu_bn"], -params.margin_below_bn, gate=False
        )
    return out


@register_study(
    "selu",
    params=SeluParams,
    paper="Klambauer, Unterthiner, Mayr & Hochreiter, Self-Normalizing Neural Networks, NeurIPS 2017",
    claim="32-layer SELU nets keep mean 0 / variance 1 at init (ReLU+LeCun collapses); on digits SELU "
    "beats plain ReLU by >= 3 pt and is >= ReLU+BN - 2 pt",
    figures=(
        FigureSpec(
            "Activation variance at init, per layer",
            "layer",
            ("init_variance",),
            "model",
            log_y=True,
            where={"figure": "init"},
        ),
        FigureSpec(
            "Activation mean at init, per layer", "layer", ("init_mean",), "model", where={"figure": "init"}
        ),
        *(
            FigureSpec(
                f"Test accuracy (%), {name}",
                "epoch",
                ("test_accuracy",),
                "model",
                where={"figure": "accuracy", "dataset": name},
            )
            for name in DATASETS
        ),
    ),
    number=15,
)
def selu_study(params: SeluParams, context: StudyContext) -> StudyOutcome:
    depth = params.depth
    stats = init_statistics(params, context)
    record_init(stats, context)
    runs = [
        {name: run_dataset(name, params, context.with_seed(seed)) for name in params.datasets}
        for seed in params.seeds
    ]
    record_curves(runs, params, context)
    final = {
        name: {kind: float(np.median([run[name][kind][-1] for run in runs])) for kind in MODELS}
        for name in params.datasets
    }
    pairs = [(ours, other) for ours in ("selu", "selu_nodrop") for other in ("relu", "relu_bn")]
    gaps = {
        name: {
            (a, b): float(np.median([run[name][a][-1] - run[name][b][-1] for run in runs])) for a, b in pairs
        }
        for name in params.datasets
    }
    analytic = fixed_point_checks()
    results = {
        "depth": depth,
        "final_accuracy": final,
        "accuracy_gaps": {name: {f"{a}_minus_{b}": v for (a, b), v in g.items()} for name, g in gaps.items()},
        "per_seed_final_accuracy": {
            name: {kind: [run[name][kind][-1] for run in runs] for kind in MODELS} for name in params.datasets
        },
        "init_last_layer": {kind: {"mean": v[-1][0], "variance": v[-1][1]} for kind, v in stats.items()},
        **analytic,
        "constants": {"lambda": SELU_LAMBDA, "alpha": SELU_ALPHA, "alpha_prime": -SELU_LAMBDA * SELU_ALPHA},
    }
    return StudyOutcome(criteria=criteria(stats, gaps, analytic, params), results=results)
