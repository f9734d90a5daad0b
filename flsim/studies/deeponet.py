"""Study 18: DeepONet learns the antiderivative operator (Lu et al., Nature Machine Intelligence 2021).

**Method.** Lu, Jin, Pang, Zhang & Karniadakis, "Learning nonlinear operators via DeepONet based on
the universal approximation theorem of operators" (Nat. Mach. Intell. 3, 218–229, 2021) approximate
an operator G by G(u)(y) ≈ Σ_k b_k(u(x_1), …, u(x_m))·t_k(y) + b₀: a *branch* net reads the input
function at m fixed sensors, a *trunk* net reads the query point y, and their p outputs are paired
by a dot product plus a scalar bias b₀. Following the official code (github.com/lululxvi/deepxde,
``DeepONetCartesianProd``; github.com/lululxvi/deeponet, ``src/deeponet_pde.py``) the branch net
[100, 40, 40] applies ReLU on its hidden layer and is linear at its output, the trunk net [1, 40, 40]
applies ReLU on every layer including its output, weights are Glorot-normal
(std √(2/(fan_in + fan_out))), biases and b₀ start at 0, and training is Adam at learning rate
10⁻³ on the mean squared error. The ``TripleCartesianProd`` format of the DeepXDE demo
``antiderivative_aligned`` evaluates every training function at the same query points, so one
step costs one branch pass per function and one trunk pass per point; DeepONet trains on the full
training set at every step, as that demo does.

**Task.** The antiderivative G(u)(y) = ∫₀^y u(s) ds on [0, 1]. Inputs u are drawn from a zero-mean
Gaussian random field with the RBF kernel k(x, x′) = exp(−(x − x′)²/(2ℓ²)), ℓ = 0.2 (official
``GRF(1, length_scale=0.2, N=1000)``, whose kernel is scikit-learn's RBF). Each u is sampled on a
fine grid of 99·10 + 1 = 991 points (the official 1000-point grid, rounded so that the 100
sensors x_j = j/99 are grid points); the sensors and the 100 query points are both
``linspace(0, 1, 100)``, as in the aligned demo. The target is the cumulative trapezoid rule on the
fine grid, which is the exact antiderivative of the piecewise-linear interpolant of the fine-grid
values and is within h²/12·max|u″| of that of the smooth field: about 7e-6 for a typical draw
(h = 1/990, max|u″| ≈ 80), against targets of root-mean-square size 0.3 (the official code
integrates a cubic interpolant with ``solve_ivp``). G(u)(0) = 0 exactly.

**Baseline.** A fully connected network on the concatenated input (u(x_1), …, u(x_m), y) with the
official baseline's shape, two ReLU hidden layers and a linear output (``FNN([m + 1] + [100] * 2
+ [1])`` in ``deeponet_pde.py``), its width chosen so that its parameter count is the closest to
DeepONet's 7 401: width 49, 7 498 parameters (+1.3 %). Same initialisation, optimiser, learning
rate and number of steps.

**Measure.** The relative L2 error of DeepXDE's "mean l2 relative error" metric: for each function,
‖Ĝ(u) − G(u)‖₂/‖G(u)‖₂ over the 100 query points, averaged over the test functions (1000 fresh
draws). Curves of training and test error against the step are recorded for both models. Adam at a
constant learning rate has occasional loss spikes, so the reported model is the official code's:
checkpoints every ``log_every`` = 1000 steps, and the one with the lowest training loss is the one
tested (``ModelCheckpoint(save_better_only=True)`` and ``model.restore(best_step)`` in
``deeponet_pde.py``; DeepXDE's checkpoint monitors the training loss). Both models are chosen this
way, on training data only; the last step's test errors are reported alongside.

Deviations from the project's study list and the paper, and why:

* **Data.** The paper's antiderivative experiment uses 10 000 training pairs (u, y), one random y
  per function (``num_train = 10000`` in ``deeponet_pde.py``); the project's list asks for 1000
  functions × 100 points (100 000 pairs), the aligned format of the DeepXDE demo (which itself
  uses 150 functions). This study follows the list.
* **Steps.** 10 000 Adam steps for both models, as the DeepXDE demo (the paper trains 50 000).
* **FNN mini-batches.** One full-batch FNN step on 100 000 pairs of 101 inputs costs about 60×
  a full DeepONet step (measured: 14 ms of CPU per 10 000 pairs against 2.4 ms), because the FNN
  repeats the whole network per pair where DeepONet shares one branch pass across the 100 points
  of a function; 10 000 such steps do not fit the study's three-minute budget. The FNN therefore
  takes each Adam step on ``fnn_batch`` = 1000 pairs drawn uniformly from the 100 000 (100 epochs
  over 10 000 steps). In a trial with 5000-pair batches (5× the cost) its test error after 10 000
  steps was 7.5 %, against 7.3 % with 1000-pair batches on the same data, so the verdict does not
  hinge on the batch.
* **GRF sampling** uses the symmetric square root of the kernel matrix from its eigendecomposition
  (negative round-off eigenvalues clipped to 0) instead of a Cholesky factor with a 10⁻¹³ jitter:
  the same Gaussian law, without a factorisation that can fail on the numerically singular RBF
  matrix (its smallest eigenvalues sit at round-off level for ℓ = 0.2 on 991 points).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from statistics import median

import numpy as np
import torch
from pydantic import Field, field_validator

from flsim.studies import (
    FigureSpec,
    StudyContext,
    StudyOutcome,
    StudyParams,
    at_most,
    register_study,
)

Params = list[torch.Tensor]
Forward = Callable[[Params, torch.Tensor], torch.Tensor]


class DeepOnetParams(StudyParams):
    length_scale: float = Field(0.2, gt=0, le=10)
    sensors: int = Field(100, ge=2, le=1000)  # m, also the number of query points
    fine_factor: int = Field(10, ge=1, le=100)  # fine grid: (m - 1)·fine_factor + 1 points
    train_functions: int = Field(1000, ge=1, le=100_000)
    test_functions: int = Field(1000, ge=1, le=100_000)
    width: int = Field(40, ge=1, le=1024)  # branch [m, w, w], trunk [1, w, w]
    steps: int = Field(10_000, ge=1, le=1_000_000)
    lr: float = Field(1e-3, gt=0, le=1)
    fnn_batch: int = Field(1000, ge=1, le=10_000_000)
    log_every: int = Field(1000, ge=1)  # also the checkpoint period (official: 1000)
    max_error: float = Field(0.02, gt=0)
    max_ratio: float = Field(0.5, gt=0)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list[int]) -> list[int]:
        if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be distinct non-negative integers")
        return seeds


# -- data: Gaussian random field inputs and their antiderivatives -----------------------------------
def rbf_kernel(x: np.ndarray, length_scale: float) -> np.ndarray:
    """exp(−(x_i − x_j)²/(2ℓ²)), scikit-learn's RBF kernel as used by the official GRF."""
    return np.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * length_scale**2))


def grf_factor(x: np.ndarray, length_scale: float) -> np.ndarray:
    """A with AAᵀ = K: the symmetric square root of the kernel matrix (round-off eigenvalues clipped)."""
    eigenvalues, vectors = np.linalg.eigh(rbf_kernel(x, length_scale))
    return vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))


def cumulative_integral(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """∫_{grid[0]}^{grid[i]} u for every i (last axis), by the cumulative trapezoid rule; 0 at i = 0."""
    steps = np.diff(grid) * 0.5 * (values[..., 1:] + values[..., :-1])
    return np.concatenate([np.zeros((*values.shape[:-1], 1)), np.cumsum(steps, axis=-1)], axis=-1)


def operator_data(
    rng: np.random.Generator, count: int, params: DeepOnetParams
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` GRF draws: u at the m sensors (count, m) and G(u) at the m query points (count, m)."""
    m, f = params.sensors, params.fine_factor
    fine = np.linspace(0.0, 1.0, (m - 1) * f + 1)
    u = rng.standard_normal((count, fine.size)) @ grf_factor(fine, params.length_scale).T
    return u[:, ::f], cumulative_integral(u, fine)[:, ::f]


# -- the two networks -------------------------------------------------------------------------------
def _glorot(gen: torch.Generator, fan_in: int, fan_out: int) -> torch.Tensor:
    return torch.randn(fan_in, fan_out, generator=gen) * math.sqrt(2.0 / (fan_in + fan_out))


def _dense(gen: torch.Generator, sizes: list[int]) -> Params:
    """Weights and zero biases of a fully connected net with the given layer sizes."""
    layers: Params = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers += [_glorot(gen, fan_in, fan_out), torch.zeros(fan_out)]
    return layers


def _mlp(layers: Params, x: torch.Tensor, relu_output: bool) -> torch.Tensor:
    for i in range(0, len(layers), 2):
        x = torch.addmm(layers[i + 1], x, layers[i]) if x.dim() == 2 else x @ layers[i] + layers[i + 1]
        if i + 2 < len(layers) or relu_output:
            x = torch.relu(x)
    return x


def deeponet_init(gen: torch.Generator, m: int, width: int) -> Params:
    """Branch [m, w, w], trunk [1, w, w] and the scalar bias b₀ (last)."""
    return _dense(gen, [m, width, width]) + _dense(gen, [1, width, width]) + [torch.zeros(())]


def deeponet_forward(p: Params, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """G(u)(y_j) = Σ_k b_k(u)·t_k(y_j) + b₀ for every function (rows) and query point (columns)."""
    branch = _mlp(p[0:4], u, relu_output=False)
    trunk = _mlp(p[4:8], y[:, None], relu_output=True)
    return branch @ trunk.T + p[8]


def fnn_width(m: int, target: int) -> int:
    """Width w of the [m + 1, w, w, 1] net whose parameter count w² + (m + 4)w + 1 is nearest ``target``."""
    return min(range(1, 4 * target), key=lambda w: abs(w * w + (m + 4) * w + 1 - target))


def fnn_forward(p: Params, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The FNN on every (function, query point) pair, (count, m) × (points,) → (count, points).

    The first layer's u-part is computed once per function and its y-part once per point; this
    is the same function as the network applied to the concatenated vector (u, y).
    """
    w1, b1 = p[0], p[1]
    first = (u @ w1[:-1] + b1)[:, None, :] + y[None, :, None] * w1[-1]
    return _mlp(p[2:], torch.relu(first), relu_output=False).squeeze(-1)


def fnn_pairs(p: Params, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The FNN on matched rows: input i is (u[i], y[i])."""
    return _mlp(p, torch.cat([u, y[:, None]], dim=1), relu_output=False).squeeze(-1)


def relative_l2(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """Mean over functions of ‖prediction − target‖₂/‖target‖₂ over the query points."""
    return float(((prediction - target).norm(dim=1) / target.norm(dim=1)).mean())


# -- training ---------------------------------------------------------------------------------------
class Trainer:
    """Adam on the mean squared error for one model, logging train and test relative L2 errors."""

    def __init__(self, name: str, p: Params, forward: Forward, lr: float) -> None:
        self.name, self.forward = name, forward
        self.p = [t.clone().requires_grad_(True) for t in p]
        self.optimizer = torch.optim.Adam(self.p, lr=lr)

    def step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

    def evaluate(self, step: int, data: dict[str, torch.Tensor]) -> dict[str, float]:
        """The full training set's MSE (what a checkpoint is chosen by) and both relative L2 errors."""
        with torch.no_grad():
            train = self.forward(self.p, data["u_train"], data["y"])
            test = self.forward(self.p, data["u_test"], data["y"])
        return {
            "step": step,
            "train_loss": float(torch.mean((train - data["g_train"]) ** 2)),
            "train_error": relative_l2(train, data["g_train"]),
            "test_error": relative_l2(test, data["g_test"]),
        }


def best_checkpoint(curve: list[dict[str, float]]) -> dict[str, float]:
    """The logged state with the lowest training loss: the official code's ``ModelCheckpoint(
    save_better_only=True)`` followed by ``model.restore(best_step)``, which monitors the training loss."""
    return min(curve, key=lambda row: row["train_loss"])


def train_models(params: DeepOnetParams, context: StudyContext) -> dict[str, list[dict[str, float]]]:
    """Train DeepONet (full batch) and the FNN (pairs drawn uniformly) side by side; return their curves."""
    u_train, g_train = operator_data(context.numpy_rng("grf_train"), params.train_functions, params)
    u_test, g_test = operator_data(context.numpy_rng("grf_test"), params.test_functions, params)
    data = {
        key: torch.as_tensor(value, dtype=torch.float32)
        for key, value in [("u_train", u_train), ("g_train", g_train), ("u_test", u_test), ("g_test", g_test)]
    }
    data["y"] = torch.linspace(0.0, 1.0, params.sensors)
    m, count = params.sensors, params.train_functions
    deeponet_start = deeponet_init(context.torch_generator("init_deeponet"), m, params.width)
    width = fnn_width(m, sum(t.numel() for t in deeponet_start))
    fnn_start = _dense(context.torch_generator("init_fnn"), [m + 1, width, width, 1])
    models = [Trainer("DeepONet", deeponet_start, deeponet_forward, params.lr),
              Trainer("FNN", fnn_start, fnn_forward, params.lr)]  # fmt: skip
    batches = context.torch_generator("fnn_batches")
    curves: dict[str, list[dict[str, float]]] = {model.name: [] for model in models}
    for step in range(params.steps + 1):
        if step % params.log_every == 0 or step == params.steps:
            for model in models:
                curves[model.name].append(model.evaluate(step, data))
        if step == params.steps:
            break
        deeponet, fnn = models
        full = deeponet_forward(deeponet.p, data["u_train"], data["y"])
        deeponet.step(torch.mean((full - data["g_train"]) ** 2))
        rows = torch.randint(0, count, (params.fnn_batch,), generator=batches)
        cols = torch.randint(0, m, (params.fnn_batch,), generator=batches)
        prediction = fnn_pairs(fnn.p, data["u_train"][rows], data["y"][cols])
        fnn.step(torch.mean((prediction - data["g_train"][rows, cols]) ** 2))
    return curves


@register_study(
    "deeponet",
    params=DeepOnetParams,
    paper="Lu, Jin, Pang, Zhang & Karniadakis, Learning nonlinear operators via DeepONet based on the "
    "universal approximation theorem of operators, Nature Machine Intelligence 2021",
    claim="on the antiderivative of Gaussian-random-field inputs, DeepONet reaches a test relative L2 "
    "error below 2% and below half that of an FNN on (u, y) with the same parameter count",
    figures=(
        FigureSpec("Antiderivative: test relative L2 error vs Adam step", "step", ("test_error",),
                   series="network", log_y=True),
        FigureSpec("Antiderivative: training relative L2 error vs Adam step", "step", ("train_error",),
                   series="network", log_y=True),
    ),
    number=18,
)  # fmt: skip
def deeponet(params: DeepOnetParams, context: StudyContext) -> StudyOutcome:
    runs = [train_models(params, context.with_seed(s)) for s in params.seeds]
    names = ("DeepONet", "FNN")
    for name in names:
        for i, row in enumerate(runs[0][name]):
            errors = {key: median(run[name][i][key] for run in runs) for key in ("train_error", "test_error")}
            context.record({"network": name, "step": row["step"], **errors})
    chosen = [{name: best_checkpoint(run[name]) for name in names} for run in runs]
    final = {name: median(c[name]["test_error"] for c in chosen) for name in names}
    criteria = {
        "deeponet_test_error": at_most(final["DeepONet"], params.max_error),
        "deeponet_over_fnn": at_most(final["DeepONet"] / final["FNN"], params.max_ratio),
    }
    m = params.sensors
    deeponet_size = sum(t.numel() for t in deeponet_init(torch.Generator(), m, params.width))
    width = fnn_width(m, deeponet_size)
    results = {
        "test_error": final,
        "train_error": {name: median(c[name]["train_error"] for c in chosen) for name in names},
        "last_step_test_error": {name: median(run[name][-1]["test_error"] for run in runs) for name in names},
        "parameters": {"DeepONet": deeponet_size, "FNN": width * width + (m + 4) * width + 1},
        "fnn_width": width,
        "per_seed": {str(seed): c for seed, c in zip(params.seeds, chosen, strict=True)},
    }
    return StudyOutcome(criteria=criteria, results=results)
