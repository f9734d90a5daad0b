"""Study 12: a two-layer deep BSDE for a call's clean value and its CVA (docs/studies/deep_bsde_xva.md).

Deep BSDE solver (Han, Jentzen & E, "Solving high-dimensional partial differential equations using
deep learning", PNAS 2018): write the pricing PDE as the BSDE dY_t = −f(t, Y_t) dt + Z_t dW_t with
Y_T = g(S_T); make the initial value Y₀ a trainable scalar and the control Z_n = NN(t_n, S_n) a
network; run the Euler scheme Y_{n+1} = Y_n − f(t_n, Y_n)Δt + Z_n ΔW_n forward along simulated paths
and minimise E|Y_N − g(S_N)|². At the optimum Y₀ is the price and Z = σS ∂V/∂S the hedge.

Layers (the "Deep xVA Solver" of Gnoatto, Picarelli & Reisinger, arXiv:2005.02633, SIAM J.
Financial Math. 2023; code github.com/AlessandroGnoatto/Deep-xVA-Solver, whose BCVA driver
``RecursiveEquation.BCVA.f_tf`` has the form used here; the layered view is Multi-Layer Deep xVA,
arXiv:2502.14766):

* Layer 1, clean value of a European call on a Black–Scholes stock: f = −rY, g = (S_T − K)⁺.
* Layer 2, unilateral reduced-form CVA (counterparty intensity λ, recovery R, no own default, no
  collateral): CVA_t = E[∫_t^T e^{−(r+λ)(s−t)} (1−R) λ V_s⁺ ds | F_t], i.e. the BSDE with driver
  f = (1−R)λV_t⁺ − (r+λ)Y and Y_T = 0, whose driver reads the Layer-1 value V along the same paths
  (V_n = the Layer-1 Euler state Y_n from the trained Y₀ and network, as in the Deep xVA Solver,
  not the closed form).

Closed forms used as the study's references: the Black–Scholes call price C, and, because the
discounted price e^{−rt}C(t, S_t) is a martingale, CVA₀ = (1−R)λ ∫₀ᵀ e^{−λs} E[e^{−rs}V_s] ds =
(1−R)(1−e^{−λT})·C.

Setup: S₀ = K = 100, r = 0.05, σ = 0.2, T = 1, λ = 0.02, R = 0.4; 50 time steps,
batch 512. GBM paths are simulated exactly (log-Euler is exact for GBM). Network: one MLP shared
over time with inputs (t/T, ln(S/K)/(σ√T)), two hidden layers of width ``width`` (tanh), whose
output is multiplied by σS so that it learns ∂V/∂S (Han et al. parametrise σᵀ∇u the same way:
the network's job is the gradient). Adam with a piecewise-constant learning rate (as the
reference code), Y₀ initialised at 0.

Optional structural variant (``structural: true``; the spec's barrier model): counterparty assets
A (A₀ = 1, independent of S) default when they first reach B; then CVA₀ = (1−R)·C·P(τ ≤ T) with
the reflection-principle hitting probability. The BSDE f = −rY is stopped at default with terminal
value (1−R)V_τ⁺; training paths use the tilted drift μ_A − θσ_A so that defaults are common, and the
loss is weighted by dQ/dQ̃ so that it is still the pricing-measure loss (the multi-layer paper's
measure change, arXiv:2502.14766, absorbs the tilt into the driver instead). Default between grid
points is detected with the Brownian-bridge crossing probability.

Deviations from the specification, and why: Layer 2 trains for 500 iterations (Layer 1 for the specified
3000): the CVA settles within about 100, and the saved time keeps the scenario near 2 minutes on
the shared 2-core machine. The structural variant is off in the scenario: it is optional, and at
this budget its SGD estimate of Y₀ misses the 5 % criterion (measured +8 to +10 %; see the doc).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import Field
from scipy.stats import norm

from flsim.studies import (
    FigureSpec,
    StudyContext,
    StudyOutcome,
    StudyParams,
    at_most,
    register_study,
)


class DeepBsdeXvaParams(StudyParams):
    spot: float = Field(100.0, gt=0.0)
    strike: float = Field(100.0, gt=0.0)
    rate: float = Field(0.05, ge=0.0, le=1.0)
    volatility: float = Field(0.2, gt=0.0, le=2.0)
    maturity: float = Field(1.0, gt=0.0, le=10.0)
    intensity: float = Field(0.02, ge=0.0, le=5.0)  # counterparty default intensity λ
    recovery: float = Field(0.4, ge=0.0, le=1.0)
    steps: int = Field(50, ge=2, le=1000)
    batch: int = Field(512, ge=8, le=65_536)
    iterations: int = Field(3000, ge=1, le=100_000)  # Layer 1 (clean value)
    cva_iterations: int = Field(500, ge=1, le=100_000)  # Layer 2 (CVA)
    width: int = Field(16, ge=1, le=1024)
    learning_rate: float = Field(0.01, gt=0.0, le=1.0)
    price_tolerance: float = Field(0.05, gt=0.0)
    cva_tolerance: float = Field(0.005, gt=0.0)
    eval_paths: int = Field(16_384, ge=256, le=1_000_000)  # fresh paths for the a-posteriori checks
    log_every: int = Field(50, ge=1)
    # structural variant: counterparty assets A (A₀ = 1) independent of S, default when A ≤ barrier
    structural: bool = False  # optional (b) variant; docs/studies/deep_bsde_xva.md has its result
    asset_drift: float = Field(0.05, ge=-1.0, le=1.0)  # μ_A (risk neutral: = r)
    asset_volatility: float = Field(0.2, gt=0.0, le=2.0)  # σ_A
    barrier: float = Field(0.6, gt=0.0, lt=1.0)  # B / A₀
    tilt: float = Field(1.5, ge=0.0, le=10.0)  # θ: training paths see the drift μ_A − θσ_A
    structural_iterations: int = Field(600, ge=1, le=100_000)
    structural_tolerance: float = Field(0.05, gt=0.0)  # relative to the closed form


def black_scholes_call(spot, strike: float, rate: float, volatility: float, tau):
    """Black–Scholes call value; at τ = 0 the payoff. Works on floats and numpy arrays."""
    spot, tau = np.asarray(spot, dtype=float), np.asarray(tau, dtype=float)
    live = tau > 0
    root = np.sqrt(np.where(live, tau, 1.0)) * volatility
    d1 = (np.log(spot / strike) + (rate + 0.5 * volatility**2) * np.where(live, tau, 1.0)) / root
    value = spot * norm.cdf(d1) - strike * np.exp(-rate * tau) * norm.cdf(d1 - root)
    result = np.where(live, value, np.maximum(spot - strike, 0.0))
    return float(result) if result.ndim == 0 else result


def cva_closed_form(price: float, intensity: float, recovery: float, maturity: float) -> float:
    """(1−R)(1−e^{−λT})·C: the discounted exposure of a long call has constant mean C."""
    return (1.0 - recovery) * (1.0 - math.exp(-intensity * maturity)) * price


@dataclass
class Paths:
    """A batch of exact GBM paths: spots (batch, steps+1) and Brownian increments (batch, steps)."""

    spot: torch.Tensor
    increments: torch.Tensor


def simulate_paths(generator: torch.Generator, params: DeepBsdeXvaParams, batch: int) -> Paths:
    dt = params.maturity / params.steps
    increments = torch.randn(batch, params.steps, generator=generator) * math.sqrt(dt)
    drift = (params.rate - 0.5 * params.volatility**2) * dt
    log_paths = torch.cumsum(drift + params.volatility * increments, dim=1)
    log_paths = torch.cat([torch.zeros(batch, 1), log_paths], dim=1)
    return Paths(params.spot * torch.exp(log_paths), increments)


class ControlNet(torch.nn.Module):
    """MLP inputs → width → width → outputs (tanh), one network shared by all time steps."""

    def __init__(self, width: int, generator: torch.Generator, inputs: int = 2, outputs: int = 1):
        super().__init__()
        pairs = itertools.pairwise([inputs, width, width, outputs])
        self.layers = torch.nn.ModuleList(torch.nn.utils.skip_init(torch.nn.Linear, a, b) for a, b in pairs)
        for layer in self.layers:  # PyTorch's default init law, drawn from the study's generator
            bound = 1.0 / math.sqrt(layer.in_features)
            torch.nn.init.uniform_(layer.weight, -bound, bound, generator=generator)
            torch.nn.init.uniform_(layer.bias, -bound, bound, generator=generator)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        hidden = features
        for layer in self.layers[:-1]:
            hidden = torch.tanh(layer(hidden))
        return self.layers[-1](hidden)


def spot_features(params: DeepBsdeXvaParams, spot: torch.Tensor) -> torch.Tensor:
    """(t_n/T, ln(S_n/K)/(σ√T)) at t_0..t_{N−1}, shape (batch, steps, 2)."""
    times = torch.arange(params.steps, dtype=spot.dtype) / params.steps
    moneyness = torch.log(spot[:, :-1] / params.strike) / (params.volatility * math.sqrt(params.maturity))
    return torch.stack([times.expand_as(moneyness), moneyness], dim=-1)


def euler_states(y0: torch.Tensor, growth: float, forcing: torch.Tensor, noise: torch.Tensor, dt: float):
    """Y_0..Y_N, shape (batch, N+1), of the Euler scheme for a driver affine in y.

    With f(t, y) = −α·y − β_n the scheme Y_{n+1} = Y_n − f Δt + Z_n·ΔW_n reads
    Y_{n+1} = a·Y_n + J_n, a = 1 + αΔt, J_n = β_nΔt + Z_n·ΔW_n (``noise``), whose solution is
    Y_n = aⁿ(Y_0 + Σ_{k<n} a^{−(k+1)} J_k): the same numbers as the step-by-step loop, computed with
    one cumulative sum instead of N sequential tensor operations (the loop dominated the run time).
    """
    steps = noise.shape[1]
    powers = (1.0 + growth * dt) ** torch.arange(steps + 1, dtype=noise.dtype)
    partial = torch.cumsum((forcing * dt + noise) / powers[1:], dim=1)
    return powers * torch.cat([y0.expand(len(noise), 1), y0 + partial], dim=1)


@dataclass
class Layer:
    """One BSDE layer, driver f = −growth·y − forcing: terminal value, trained Y₀ and control network.

    The control is Z_n = σS_n·NN(t_n/T, ln(S_n/K)/(σ√T)): the network learns ∂V/∂S.
    """

    params: DeepBsdeXvaParams
    growth: float
    forcing: Callable[[Paths, torch.Tensor | None], torch.Tensor]
    terminal: Callable[[Paths], torch.Tensor]
    y0: torch.Tensor
    net: ControlNet

    def states(self, paths: Paths, exposure: torch.Tensor | None = None) -> torch.Tensor:
        p = self.params
        controls = self.net(spot_features(p, paths.spot))[..., 0] * p.volatility * paths.spot[:, :-1]
        noise = controls * paths.increments
        return euler_states(self.y0, self.growth, self.forcing(paths, exposure), noise, p.maturity / p.steps)


def learning_rate(params: DeepBsdeXvaParams, iteration: int, total: int) -> float:
    """Piecewise constant: lr, lr/10 after half the iterations, lr/100 for the last sixth."""
    if iteration < total // 2:
        return params.learning_rate
    return params.learning_rate / (10.0 if iteration < total - total // 6 else 100.0)


def train(
    y0: torch.Tensor,
    net: ControlNet,
    params: DeepBsdeXvaParams,
    iterations: int,
    batch_loss: Callable[[], torch.Tensor],
    record: Callable[[int, float, float], None],
    y0_step: float = 1.0,
) -> None:
    """Adam on a fresh batch's terminal loss each step; Y₀'s step size is ``y0_step`` times the network's.

    Adam moves a parameter by about its learning rate per step whatever the gradient's size, so Y₀'s
    step should match the size of the value it learns: ×10 for the clean price (≈ 10), ×1 for the
    CVA layers (≈ 0.05–0.1), whose Y₀ would otherwise wander by more than its own value.
    """
    optimizer = torch.optim.Adam(
        [
            {"params": [y0], "lr": y0_step * params.learning_rate, "scale": y0_step},
            {"params": net.parameters(), "lr": params.learning_rate, "scale": 1.0},
        ]
    )
    for iteration in range(iterations):
        for group in optimizer.param_groups:
            group["lr"] = group["scale"] * learning_rate(params, iteration, iterations)
        loss = batch_loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if iteration % params.log_every == 0 or iteration == iterations - 1:
            record(iteration, float(y0.detach()), float(loss.detach()))


def train_layer(
    layer: Layer,
    iterations: int,
    sample: Callable[[], tuple[Paths, torch.Tensor | None]],
    record: Callable[[int, float, float], None],
    y0_step: float,
) -> None:
    """Minimise E|Y_N − g(S_N)|² over fresh batches from ``sample``."""

    def batch_loss() -> torch.Tensor:
        paths, exposure = sample()
        return torch.mean((layer.states(paths, exposure)[:, -1] - layer.terminal(paths)) ** 2)

    train(layer.y0, layer.net, layer.params, iterations, batch_loss, record, y0_step)


def clean_layer(params: DeepBsdeXvaParams, generator: torch.Generator) -> Layer:
    """Layer 1: f = −rY (discounting only), g = (S_T − K)⁺."""
    return Layer(
        params=params,
        growth=params.rate,
        forcing=lambda paths, exposure: torch.zeros_like(paths.increments),
        terminal=lambda paths: torch.relu(paths.spot[:, -1] - params.strike),
        y0=torch.zeros((), requires_grad=True),
        net=ControlNet(params.width, generator),
    )


def cva_layer(params: DeepBsdeXvaParams, generator: torch.Generator) -> Layer:
    """Layer 2: f = (1−R)λV⁺ − (r+λ)Y with V the Layer-1 exposure at t_0..t_{N−1}, Y_T = 0."""
    loss_rate = (1.0 - params.recovery) * params.intensity

    def forcing(paths: Paths, exposure: torch.Tensor | None) -> torch.Tensor:
        if exposure is None:
            raise ValueError("the CVA layer needs the Layer-1 exposure along the paths")
        return -loss_rate * torch.relu(exposure[:, :-1])

    return Layer(
        params=params,
        growth=params.rate + params.intensity,
        forcing=forcing,
        terminal=lambda paths: torch.zeros(paths.spot.shape[0]),
        y0=torch.zeros((), requires_grad=True),
        net=ControlNet(params.width, generator),
    )


def exposure_of(clean: Layer, paths: Paths, params: DeepBsdeXvaParams) -> torch.Tensor:
    """Layer-1 values V_n along the paths (the trained Euler states), without gradients."""
    with torch.no_grad():
        return clean.states(paths)


def outer_cva(exposure: np.ndarray, params: DeepBsdeXvaParams) -> tuple[float, float]:
    """(1−R)λ Σ_n e^{−(r+λ)t_n} V_n⁺ Δt averaged over paths (left-point rule), with its std. error."""
    dt = params.maturity / params.steps
    times = np.arange(params.steps) * dt
    weights = (
        (1 - params.recovery) * params.intensity * np.exp(-(params.rate + params.intensity) * times) * dt
    )
    per_path = np.maximum(exposure[:, : params.steps], 0.0) @ weights
    return float(per_path.mean()), float(per_path.std(ddof=1) / math.sqrt(len(per_path)))


def evaluate(clean: Layer, params: DeepBsdeXvaParams, generator: torch.Generator) -> dict[str, float]:
    """A-posteriori checks on fresh paths: terminal mismatch, exposure error, outer-MC CVA."""
    paths = simulate_paths(generator, params, params.eval_paths)
    values = exposure_of(clean, paths, params).numpy()
    mismatch = values[:, -1] - clean.terminal(paths).numpy()
    dt = params.maturity / params.steps
    tau = params.maturity - np.arange(params.steps + 1) * dt
    exact = black_scholes_call(paths.spot.numpy(), params.strike, params.rate, params.volatility, tau)
    cva_nn, cva_nn_se = outer_cva(values, params)
    cva_bs, cva_bs_se = outer_cva(exact, params)
    return {
        "clean_terminal_mse": float(np.mean(mismatch**2)),
        "clean_terminal_bias": float(mismatch.mean()),
        "exposure_mean_abs_error": float(np.mean(np.abs(values[:, :-1] - exact[:, :-1]))),
        "cva_outer_mc_layer1": cva_nn,
        "cva_outer_mc_layer1_se": cva_nn_se,
        "cva_outer_mc_exact_values": cva_bs,
        "cva_outer_mc_exact_values_se": cva_bs_se,
    }


def first_passage_probability(params: DeepBsdeXvaParams) -> float:
    """P(min_{t≤T} ln A_t ≤ b) for ln A a Brownian motion with drift ν = μ_A − σ_A²/2, b = ln(B/A₀):
    N((b − νT)/(σ_A√T)) + e^{2νb/σ_A²}·N((b + νT)/(σ_A√T)) (reflection principle)."""
    b, sigma, t = math.log(params.barrier), params.asset_volatility, params.maturity
    nu = params.asset_drift - 0.5 * sigma**2
    root = sigma * math.sqrt(t)
    return float(
        norm.cdf((b - nu * t) / root) + math.exp(2 * nu * b / sigma**2) * norm.cdf((b + nu * t) / root)
    )


@dataclass
class AssetPaths:
    """Counterparty asset paths simulated under the tilted measure Q̃, stopped at default."""

    distance: torch.Tensor  # ln(A_n/B) at t_0..t_N, shape (batch, steps+1)
    increments: torch.Tensor  # ΔW^A_n under the pricing measure Q (= ΔW̃_n − θΔt)
    stop: torch.Tensor  # κ: the step at whose end default is detected, or N; long (batch,)
    defaulted: torch.Tensor  # bool (batch,)
    log_weight: torch.Tensor  # ln dQ/dQ̃ on F_{t_κ} = θW̃_{t_κ} − ½θ²t_κ (W̃ has drift θ under Q)


def simulate_assets(generator: torch.Generator, params: DeepBsdeXvaParams, batch: int) -> AssetPaths:
    """ln A under Q̃ (drift lowered by θσ_A, so defaults are common), with default between grid
    points detected by the Brownian-bridge crossing probability exp(−2 d_n d_{n+1}/(σ_A²Δt)),
    which does not depend on the drift: the default time is monitored continuously in law."""
    dt, sigma, theta = params.maturity / params.steps, params.asset_volatility, params.tilt
    tilted = torch.randn(batch, params.steps, generator=generator) * math.sqrt(dt)
    drift = (params.asset_drift - 0.5 * sigma**2 - theta * sigma) * dt
    start = torch.full((batch, 1), -math.log(params.barrier))
    distance = torch.cat([start, start + torch.cumsum(drift + sigma * tilted, dim=1)], dim=1)
    crossing = torch.exp(
        -2.0 * distance[:, :-1].clamp(min=0) * distance[:, 1:].clamp(min=0) / (sigma**2 * dt)
    )
    hit = (distance[:, 1:] <= 0) | (torch.rand(batch, params.steps, generator=generator) < crossing)
    defaulted = hit.any(dim=1)
    stop = torch.where(defaulted, hit.to(torch.int64).argmax(dim=1) + 1, params.steps)
    brownian = torch.cat([torch.zeros(batch, 1), torch.cumsum(tilted, dim=1)], dim=1)
    at_stop = brownian.gather(1, stop[:, None])[:, 0]
    log_weight = theta * at_stop - 0.5 * theta**2 * stop * dt
    return AssetPaths(distance, tilted - theta * dt, stop, defaulted, log_weight)


def structural_terms(
    y0: torch.Tensor, net: ControlNet, params: DeepBsdeXvaParams, paths: Paths, exposure, assets: AssetPaths
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Y_κ, ξ, dQ/dQ̃) per path, with ξ = (1−R)V_κ⁺·1{default}.

    Y is the Euler scheme of f = −rY with the two-factor control Z = (σS·∂_S, σ_A·∂_{ln A}) from one
    network with inputs (t, moneyness, distance to the barrier), driven by the Q-increments, and
    stopped at κ (states after κ are never read). The loss E_Q̃[(dQ/dQ̃)|Y_κ − ξ|²] = E_Q|Y_κ − ξ|²
    is the pricing-measure loss, estimated on paths where default is common.
    """
    distance = assets.distance[:, :-1, None] / (params.asset_volatility * math.sqrt(params.maturity))
    raw = net(torch.cat([spot_features(params, paths.spot), distance], dim=-1))
    noise = raw[..., 0] * params.volatility * paths.spot[:, :-1] * paths.increments
    noise = noise + raw[..., 1] * params.asset_volatility * assets.increments
    states = euler_states(y0, params.rate, torch.zeros_like(noise), noise, params.maturity / params.steps)
    stopped = states.gather(1, assets.stop[:, None])[:, 0]
    loss_given_default = (1.0 - params.recovery) * torch.relu(exposure.gather(1, assets.stop[:, None])[:, 0])
    target = torch.where(assets.defaulted, loss_given_default, torch.zeros_like(stopped))
    return stopped, target, torch.exp(assets.log_weight)


def refit_initial_value(net: ControlNet, params: DeepBsdeXvaParams, paths: Paths, exposure, assets) -> float:
    """The Y₀ minimising the weighted terminal loss for the trained network, on fresh paths.

    Y_κ is affine in Y₀: Y_κ = a^κ·Y₀ + Y_κ|_{Y₀=0} with a = 1 + rΔt, so the minimiser is the weighted
    least-squares value Σw a^κ(ξ − Y_κ|₀) / Σw a^{2κ}: the deep BSDE's own Y₀ without the step-size
    noise of the last SGD iterates.
    """
    with torch.no_grad():
        offset, target, weight = structural_terms(torch.zeros(()), net, params, paths, exposure, assets)
        growth = (1.0 + params.rate * params.maturity / params.steps) ** assets.stop.to(offset.dtype)
        return float(torch.sum(weight * growth * (target - offset)) / torch.sum(weight * growth**2))


def train_structural(
    clean: Layer, params: DeepBsdeXvaParams, context: StudyContext, record
) -> dict[str, float]:
    """Train the structural CVA layer: its Y₀, Y₀ refitted on fresh paths, sampled default probability."""
    net = ControlNet(params.width, context.torch_generator("init", 3), inputs=3, outputs=2)
    y0 = torch.zeros((), requires_grad=True)
    spots, assets_stream = context.torch_generator("paths", 3), context.torch_generator("assets", 3)

    def batch_loss() -> torch.Tensor:
        paths = simulate_paths(spots, params, params.batch)
        assets = simulate_assets(assets_stream, params, params.batch)
        stopped, target, weight = structural_terms(
            y0, net, params, paths, exposure_of(clean, paths, params), assets
        )
        return torch.mean(weight * (stopped - target) ** 2)

    train(y0, net, params, params.structural_iterations, batch_loss, record, y0_step=1.0)
    paths = simulate_paths(context.torch_generator("eval", 4), params, params.eval_paths)
    assets = simulate_assets(context.torch_generator("eval", 3), params, params.eval_paths)
    return {
        "structural_cva": float(y0.detach()),
        "structural_cva_refit": refit_initial_value(
            net, params, paths, exposure_of(clean, paths, params), assets
        ),
        "default_probability_importance_sampled": float(
            torch.mean(torch.exp(assets.log_weight) * assets.defaulted)
        ),
    }


@register_study(
    "deep_bsde_xva",
    params=DeepBsdeXvaParams,
    paper="Han, Jentzen & E, Solving high-dimensional PDEs using deep learning, PNAS 2018; Gnoatto, "
    "Picarelli & Reisinger, Deep xVA solver, arXiv:2005.02633",
    claim="a deep BSDE learns the Black-Scholes call price (|Y0-BS|<0.05) and a second BSDE layer driven "
    "by its exposure learns the reduced-form CVA (1-R)(1-exp(-lambda T))C within 0.005",
    figures=(
        FigureSpec("Layer 1: Y0 vs iteration", "iteration", ("y0", "reference"), where={"layer": "clean"}),
        FigureSpec("Layer 2: CVA0 vs iteration", "iteration", ("y0", "reference"), where={"layer": "cva"}),
        FigureSpec(
            "Structural CVA0 vs iteration", "iteration", ("y0", "reference"), where={"layer": "structural"}
        ),
        FigureSpec("Training loss E|Y_N - g|^2", "iteration", ("loss",), series="layer", log_y=True),
    ),
    number=12,
)
def deep_bsde_xva(params: DeepBsdeXvaParams, context: StudyContext) -> StudyOutcome:
    price = black_scholes_call(params.spot, params.strike, params.rate, params.volatility, params.maturity)
    cva_exact = cva_closed_form(price, params.intensity, params.recovery, params.maturity)

    def recorder(name: str, reference: float) -> Callable[[int, float, float], None]:
        def record(iteration: int, y0: float, loss: float) -> None:
            row = {"layer": name, "iteration": iteration, "y0": y0, "loss": loss, "reference": reference}
            context.record(row)

        return record

    clean = clean_layer(params, context.torch_generator("init", 1))
    clean_paths = context.torch_generator("paths", 1)
    train_layer(
        clean,
        params.iterations,
        lambda: (simulate_paths(clean_paths, params, params.batch), None),
        recorder("clean", price),
        y0_step=10.0,
    )

    cva = cva_layer(params, context.torch_generator("init", 2))
    cva_paths = context.torch_generator("paths", 2)

    def sample_with_exposure() -> tuple[Paths, torch.Tensor]:
        paths = simulate_paths(cva_paths, params, params.batch)
        return paths, exposure_of(clean, paths, params)

    train_layer(cva, params.cva_iterations, sample_with_exposure, recorder("cva", cva_exact), y0_step=1.0)
    checks = evaluate(clean, params, context.torch_generator("eval", 0))
    y0, cva0 = float(clean.y0.detach()), float(cva.y0.detach())
    criteria = {
        "price_error": at_most(abs(y0 - price), params.price_tolerance),
        "cva_error": at_most(abs(cva0 - cva_exact), params.cva_tolerance),
    }
    results = {"price": y0, "bs_price": price, "cva": cva0, "cva_exact": cva_exact, **checks}
    if params.structural:
        probability = first_passage_probability(params)
        exact = (1.0 - params.recovery) * price * probability
        structural = train_structural(clean, params, context, recorder("structural", exact))
        error = abs(structural["structural_cva"] / exact - 1.0)
        criteria["structural_cva_relative_error"] = at_most(error, params.structural_tolerance)
        results |= {"structural_cva_exact": exact, "default_probability": probability, **structural}
    return StudyOutcome(criteria=criteria, results=results)
