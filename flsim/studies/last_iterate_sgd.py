"""Study 21: last-iterate convergence of SGD, measured as log-log slopes (docs/studies.md #21).

Two convex problems with closed-form optima, with a seeded Gaussian gradient oracle:

* strongly convex f(x) = (μ/2)‖x‖² with steps η_t = 1/(μ t): the last iterate's expected gap
  is O(1/T) (here exactly σ² d / (2 μ T) up to lower-order terms), slope −1;
* convex Lipschitz f(x) = ‖x‖₁ with steps η_t = c/√t: the last iterate's gap decays as
  O(log T / √T), a slope just above −½.

The gap at each horizon T is averaged over ``repeats`` independent runs; the study passes
when both fitted slopes are within ``tolerance`` of their theoretical values.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from flsim.studies import (
    FigureSpec,
    StudyContext,
    StudyOutcome,
    StudyParams,
    between,
    register_study,
)


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


class LastIterateParams(StudyParams):
    dim: int = Field(5, ge=1, le=10_000)
    mu: float = Field(1.0, gt=0)
    sigma: float = Field(1.0, ge=0)
    step: float = Field(1.0, gt=0)
    repeats: int = Field(200, ge=1, le=100_000)
    tolerance: float = Field(0.15, ge=0)


@register_study(
    "last_iterate_sgd",
    params=LastIterateParams,
    paper="Liu & Zhou, Revisiting the last-iterate convergence of stochastic gradient methods, ICLR 2024",
    claim="last-iterate gap slopes: -1 (strongly convex), -1/2 (convex Lipschitz)",
    figures=(
        FigureSpec(
            "Last-iterate gap", "horizon", ("gap_strongly_convex", "gap_lipschitz"), log_x=True, log_y=True
        ),
    ),
    number=21,
)
def last_iterate_sgd(params: LastIterateParams, context: StudyContext) -> StudyOutcome:
    horizons = [2**k for k in range(4, 12)]
    gaps: dict[str, list[float]] = {"strongly_convex": [], "lipschitz": []}
    shape = (params.repeats, params.dim)
    for horizon in horizons:
        rng = context.numpy_rng("sgd", 0, horizon)
        gaps["strongly_convex"].append(_strongly_convex_gap(rng, horizon, shape, params.mu, params.sigma))
        gaps["lipschitz"].append(_lipschitz_gap(rng, horizon, shape, params.step, params.sigma))
        context.record(
            {
                "horizon": horizon,
                "virtual_time": float(horizon),
                "grad_evals": horizon * params.repeats * 2,
                "gap_strongly_convex": gaps["strongly_convex"][-1],
                "gap_lipschitz": gaps["lipschitz"][-1],
            }
        )
    log_t = np.log(horizons)
    slope_sc = float(np.polyfit(log_t, np.log(gaps["strongly_convex"]), 1)[0])
    slope_lip = float(np.polyfit(log_t, np.log(gaps["lipschitz"]), 1)[0])
    tol = params.tolerance
    return StudyOutcome(
        criteria={
            "slope_strongly_convex": between(slope_sc, -1.0 - tol, -1.0 + tol),
            "slope_lipschitz": between(slope_lip, -0.5 - tol, -0.5 + tol),
        },
        results={"horizons": horizons, "gaps": gaps},
    )
