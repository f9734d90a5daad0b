"""Study 21: last-iterate convergence of SGD, measured as log-log slopes (STUDIES.md #21).

Two convex problems with closed-form optima, with a seeded Gaussian gradient oracle:

* strongly convex f(x) = (μ/2)‖x‖² with steps η_t = 1/(μ t): the last iterate's expected gap
  is O(1/T) (here exactly σ² d / (2 μ T) up to lower-order terms), slope −1;
* convex Lipschitz f(x) = ‖x‖₁ with steps η_t = c/√t: the last iterate's gap decays as
  O(log T / √T), a slope just above −½.

The gap at each horizon T is averaged over ``repeats`` independent runs; the study passes
when both fitted slopes are within ``tolerance`` of their theoretical values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flsim.engine.rng import numpy_rng
from flsim.studies import Recorder, register_study


def _strongly_convex_gap(
    rng: np.random.Generator, horizon: int, shape: tuple[int, int], mu: float, sigma: float
):
    """Mean over independent runs (the rows of x) of f(x_T) − f*."""
    x = np.ones(shape)
    for t in range(1, horizon + 1):
        x = x - (1.0 / (mu * t)) * (mu * x + sigma * rng.standard_normal(shape))
    return float(np.mean(0.5 * mu * (x**2).sum(axis=1)))


def _lipschitz_gap(rng: np.random.Generator, horizon: int, shape: tuple[int, int], step: float, sigma: float):
    x = np.ones(shape)
    for t in range(1, horizon + 1):
        x = x - (step / np.sqrt(t)) * (np.sign(x) + sigma * rng.standard_normal(shape))
    return float(np.mean(np.abs(x).sum(axis=1)))


@register_study("last_iterate_sgd")
def last_iterate_sgd(scenario: Any, recorder: Recorder) -> dict[str, Any]:
    params = {"dim": 5, "mu": 1.0, "sigma": 1.0, "step": 1.0, "repeats": 200, "tolerance": 0.15}
    params.update({k: v for k, v in scenario.study.items() if k != "name"})
    horizons = [2**k for k in range(4, 12)]
    gaps: dict[str, list[float]] = {"strongly_convex": [], "lipschitz": []}
    for index, horizon in enumerate(horizons):
        shape = (int(params["repeats"]), int(params["dim"]))
        rng = numpy_rng(scenario.seed, "study.sgd", 0, horizon)
        gaps["strongly_convex"].append(
            _strongly_convex_gap(rng, horizon, shape, params["mu"], params["sigma"])
        )
        gaps["lipschitz"].append(_lipschitz_gap(rng, horizon, shape, params["step"], params["sigma"]))
        recorder.append_metrics(
            {
                "round": index,
                "horizon": horizon,
                "virtual_time": float(horizon),
                "grad_evals": horizon * int(params["repeats"]) * 2,
                "gap_strongly_convex": gaps["strongly_convex"][-1],
                "gap_lipschitz": gaps["lipschitz"][-1],
            }
        )
    log_t = np.log(horizons)
    slope_sc = float(np.polyfit(log_t, np.log(gaps["strongly_convex"]), 1)[0])
    slope_lip = float(np.polyfit(log_t, np.log(gaps["lipschitz"]), 1)[0])
    tolerance = float(params["tolerance"])
    return {
        "slope_strongly_convex": slope_sc,
        "expected_strongly_convex": -1.0,
        "slope_lipschitz": slope_lip,
        "expected_lipschitz": -0.5,
        "pass": abs(slope_sc + 1.0) <= tolerance and abs(slope_lip + 0.5) <= tolerance,
    }
