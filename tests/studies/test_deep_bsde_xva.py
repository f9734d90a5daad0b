"""Study 12 (two-layer deep BSDE, clean value + CVA): closed forms checked independently.

The Black–Scholes price is recomputed here by quadrature against the lognormal law and by Monte
Carlo; the CVA identity by Monte Carlo along exact GBM paths with exact Black–Scholes values.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

import flsim
from flsim.config.errors import ConfigErrors
from flsim.studies.deep_bsde_xva import (
    DeepBsdeXvaParams,
    black_scholes_call,
    cva_closed_form,
    euler_states,
    first_passage_probability,
    outer_cva,
    simulate_assets,
    simulate_paths,
)

S0, K, R, SIGMA, T = 100.0, 100.0, 0.05, 0.2, 1.0


def _discounted_payoff_by_quadrature(payoff, spot=S0, tau=T) -> float:
    """e^{−rτ} E[payoff(S_τ)] with S_τ = S·exp((r − σ²/2)τ + σ√τ Z), integrated over Z."""

    def integrand(z: float) -> float:
        s_tau = spot * math.exp((R - 0.5 * SIGMA**2) * tau + SIGMA * math.sqrt(tau) * z)
        return payoff(s_tau) * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

    kink = (math.log(K / spot) - (R - 0.5 * SIGMA**2) * tau) / (SIGMA * math.sqrt(tau))  # S_τ = K
    return math.exp(-R * tau) * quad(integrand, -12, 12, limit=200, points=[kink])[0]


def test_black_scholes_matches_quadrature_monte_carlo_and_put_call_parity():
    call = _discounted_payoff_by_quadrature(lambda s: max(s - K, 0.0))
    put = _discounted_payoff_by_quadrature(lambda s: max(K - s, 0.0))
    price = black_scholes_call(S0, K, R, SIGMA, T)
    assert price == pytest.approx(call, abs=1e-8)
    assert price == pytest.approx(10.450584, abs=1e-6)  # the value quoted in docs/studies/deep_bsde_xva.md
    assert call - put == pytest.approx(S0 - K * math.exp(-R * T), abs=1e-8)  # put–call parity
    z = np.random.default_rng(0).standard_normal(1_000_000)
    terminal = S0 * np.exp((R - 0.5 * SIGMA**2) * T + SIGMA * math.sqrt(T) * np.concatenate([z, -z]))
    payoff = math.exp(-R * T) * np.maximum(terminal - K, 0.0)
    assert abs(payoff.mean() - price) < 4 * payoff.std() / math.sqrt(len(z))
    # other spots and maturities, and the payoff at τ = 0
    for spot, tau in [(80.0, 0.5), (120.0, 2.0), (100.0, 0.01)]:
        expected = _discounted_payoff_by_quadrature(lambda s: max(s - K, 0.0), spot, tau)
        assert black_scholes_call(spot, K, R, SIGMA, tau) == pytest.approx(expected, abs=1e-7)
    np.testing.assert_allclose(black_scholes_call(np.array([90.0, 110.0]), K, R, SIGMA, 0.0), [0.0, 10.0])


def test_a_wrong_black_scholes_formula_is_caught():
    """Using −σ²/2 in d1 (the d2 drift) is a classic slip: the quadrature check rejects it."""
    d1 = (math.log(S0 / K) + (R - 0.5 * SIGMA**2) * T) / (SIGMA * math.sqrt(T))
    phi = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    wrong = S0 * phi(d1) - K * math.exp(-R * T) * phi(d1 - SIGMA * math.sqrt(T))
    assert abs(wrong - _discounted_payoff_by_quadrature(lambda s: max(s - K, 0.0))) > 0.1


def _cva_by_monte_carlo(
    intensity: float, recovery: float, paths: int, steps: int = 50
) -> tuple[float, float]:
    """(1−R)λ ∫₀ᵀ e^{−(r+λ)s} C(s, S_s) ds by the trapezoid rule along exact GBM paths with exact
    Black–Scholes values, averaged over paths (in chunks); returns (mean, standard error)."""
    rng = np.random.default_rng(1)
    dt = T / steps
    times = np.arange(steps + 1) * dt
    weights = np.full(steps + 1, dt)
    weights[[0, -1]] = dt / 2
    weights *= (1 - recovery) * intensity * np.exp(-(R + intensity) * times)
    totals = []
    for _ in range(paths // 20_000):
        increments = rng.standard_normal((20_000, steps)) * math.sqrt(dt)
        logs = np.cumsum((R - 0.5 * SIGMA**2) * dt + SIGMA * increments, axis=1)
        spots = S0 * np.exp(np.hstack([np.zeros((20_000, 1)), logs]))
        totals.append(black_scholes_call(spots, K, R, SIGMA, T - times) @ weights)
    per_path = np.concatenate(totals)
    return float(per_path.mean()), float(per_path.std(ddof=1) / math.sqrt(len(per_path)))


def test_cva_identity_by_monte_carlo_with_exact_values_along_paths():
    """The discounted price is a martingale, so CVA₀ = (1−R)(1−e^{−λT})·C; trapezoid error ~1e-7."""
    price = black_scholes_call(S0, K, R, SIGMA, T)
    for intensity in (0.02, 0.5):  # the spec's λ, and a large one that separates the wrong variants
        mean, se = _cva_by_monte_carlo(intensity, 0.4, 100_000)
        exact = cva_closed_form(price, intensity, 0.4, T)
        assert exact == pytest.approx(0.6 * (1 - math.exp(-intensity)) * 10.450584, rel=1e-6)
        assert abs(mean - exact) < 4 * se and se < 0.01 * exact
        if intensity == 0.5:
            assert abs(mean - 0.6 * intensity * T * price) > 10 * se  # no survival discount: wrong
            assert abs(mean - 0.4 * (1 - math.exp(-intensity)) * price) > 10 * se  # R for 1−R: wrong


def test_the_studys_outer_cva_estimator_agrees_with_the_identity():
    params = DeepBsdeXvaParams()
    rng = np.random.default_rng(2)
    dt = T / params.steps
    times = np.arange(params.steps + 1) * dt
    increments = rng.standard_normal((40_000, params.steps)) * math.sqrt(dt)
    logs = np.cumsum((R - 0.5 * SIGMA**2) * dt + SIGMA * increments, axis=1)
    spots = S0 * np.exp(np.hstack([np.zeros((40_000, 1)), logs]))
    mean, se = outer_cva(black_scholes_call(spots, K, R, SIGMA, T - times), params)
    exact = cva_closed_form(black_scholes_call(S0, K, R, SIGMA, T), 0.02, 0.4, T)
    # left-point rule: relative bias ≈ (r+λ)Δt/2 ≈ 7e-4, far below the Monte Carlo error here
    assert abs(mean - exact) < 4 * se + 1e-3 * exact


def test_vectorised_euler_scheme_equals_the_step_by_step_loop():
    generator = torch.Generator().manual_seed(0)
    batch, steps, dt, growth = 7, 11, 0.09, 0.07
    increments = torch.randn(batch, steps, generator=generator, dtype=torch.float64) * math.sqrt(dt)
    forcing = torch.randn(batch, steps, generator=generator, dtype=torch.float64)
    controls = torch.randn(batch, steps, generator=generator, dtype=torch.float64)
    y0 = torch.tensor(1.3, dtype=torch.float64)
    states = euler_states(y0, growth, forcing, controls * increments, dt)
    y = y0.expand(batch)
    for n in range(steps):  # Y_{n+1} = Y_n − f Δt + Z ΔW with f = −growth·Y − forcing
        assert torch.allclose(states[:, n], y)
        y = y - (-growth * y - forcing[:, n]) * dt + controls[:, n] * increments[:, n]
    assert torch.allclose(states[:, -1], y)


def _hitting_probability_by_quadrature(params: DeepBsdeXvaParams) -> float:
    """∫₀ᵀ of the first-passage density of a drifted Brownian motion to level b < 0 (inverse Gaussian)."""
    b, sigma = math.log(params.barrier), params.asset_volatility
    nu = params.asset_drift - 0.5 * sigma**2

    def density(t: float) -> float:
        return (
            -b / (sigma * math.sqrt(2 * math.pi * t**3)) * math.exp(-((b - nu * t) ** 2) / (2 * sigma**2 * t))
        )

    return quad(density, 0.0, params.maturity, limit=200)[0]


def test_structural_default_probability_formula_and_the_tilted_sampler():
    """The reflection formula, the Brownian-bridge default sampler (untilted) and the likelihood-ratio
    weights of the tilted sampler all give the same P(τ ≤ T); a wrong-sign weight does not."""
    params = DeepBsdeXvaParams(structural=True)
    probability = first_passage_probability(params)
    assert probability == pytest.approx(_hitting_probability_by_quadrature(params), rel=1e-7)
    for barrier in (0.5, 0.8):
        other = DeepBsdeXvaParams(barrier=barrier, asset_drift=-0.1, asset_volatility=0.3)
        assert first_passage_probability(other) == pytest.approx(
            _hitting_probability_by_quadrature(other), rel=1e-7
        )
    draws = 100_000
    plain = simulate_assets(torch.Generator().manual_seed(1), params.model_copy(update={"tilt": 0.0}), draws)
    frequency = float(plain.defaulted.double().mean())
    assert abs(frequency - probability) < 4 * math.sqrt(
        probability / draws
    )  # bridge: no discrete-monitoring bias
    tilted = simulate_assets(torch.Generator().manual_seed(2), params, draws)
    assert float(tilted.defaulted.double().mean()) > 10 * probability  # defaults are common under Q̃
    weighted = (torch.exp(tilted.log_weight) * tilted.defaulted).double()
    se = float(weighted.std()) / math.sqrt(draws)
    assert abs(float(weighted.mean()) - probability) < 4 * se
    wrong = (torch.exp(-tilted.log_weight) * tilted.defaulted).double().mean()  # dQ̃/dQ instead of dQ/dQ̃
    assert abs(float(wrong) - probability) > 100 * se


def test_structural_cva_identity_with_exact_values_at_default():
    """(1−R)E_Q[e^{−rτ}C(τ, S_τ)1{τ≤T}] = (1−R)·C·P(τ≤T) for assets independent of S, estimated on
    tilted paths with the likelihood-ratio weights (default detected at the end of its step)."""
    params = DeepBsdeXvaParams(structural=True)
    generator = torch.Generator().manual_seed(3)
    dt = T / params.steps
    totals = []
    for _ in range(3):
        assets = simulate_assets(generator, params, 40_000)
        paths = simulate_paths(generator, params, 40_000)
        stop = assets.stop.numpy()
        spot = paths.spot.numpy()[np.arange(40_000), stop]
        value = black_scholes_call(spot, K, R, SIGMA, T - stop * dt) * np.exp(-R * stop * dt)
        totals.append(0.6 * np.exp(assets.log_weight.numpy()) * assets.defaulted.numpy() * value)
    per_path = np.concatenate(totals)
    exact = 0.6 * black_scholes_call(S0, K, R, SIGMA, T) * first_passage_probability(params)
    assert abs(per_path.mean() - exact) < 4 * per_path.std() / math.sqrt(len(per_path))


REDUCED = [
    "study.steps=20",
    "study.batch=256",
    "study.iterations=600",
    "study.cva_iterations=200",
    "study.width=8",
    "study.eval_paths=4096",
    "study.price_tolerance=0.25",
    "study.cva_tolerance=0.01",
]


def test_reduced_two_layer_training_reaches_the_closed_forms(tmp_path):
    result = flsim.run("scenarios/studies/deep_bsde_xva.yaml", REDUCED, run_dir=tmp_path / "run")
    summary = json.loads((result.run_dir / "summary.json").read_text())
    price = _discounted_payoff_by_quadrature(lambda s: max(s - K, 0.0))
    assert summary["status"] == "completed" and summary["pass"] is True
    assert abs(summary["results"]["price"] - price) < 0.25
    assert abs(summary["results"]["cva"] - 0.6 * (1 - math.exp(-0.02)) * price) < 0.01
    rows = flsim.load_runs(result.run_dir)
    assert set(rows["layer"]) == {"clean", "cva"}


def test_a_malformed_study_parameter_names_its_key():
    with pytest.raises(ConfigErrors, match=r"study\.recovery"):
        flsim.run({"kind": "study", "study": {"name": "deep_bsde_xva", "recovery": 1.5}})
    with pytest.raises(ConfigErrors, match=r"study\.steps"):
        flsim.run({"kind": "study", "study": {"name": "deep_bsde_xva", "steps": 0}})
    with pytest.raises(ConfigErrors, match=r"study\.volatilty"):
        flsim.run({"kind": "study", "study": {"name": "deep_bsde_xva", "volatilty": 0.2}})
