"""The equality-constrained Hock–Schittkowski problems of study 10, written from their statements.

Each problem is ``min f(x) s.t. c(x) = 0`` with the standard start ``x0``, the published optimal
value ``f*`` and, where the book gives it, the published minimiser ``x*``. The statements are
those of W. Hock and K. Schittkowski, *Test Examples for Nonlinear Programming Codes*, Lecture
Notes in Economics and Mathematical Systems 187, Springer, 1981 (problems 6, 7, 8, 9, 26, 27,
28, 39, 40, 42, 46–52, 61, 77–79). They were checked term by term against two public
transcriptions of the set: the Julia collection OptimizationProblems.jl
(JuliaSmoothOptimizers, ``src/ADNLPProblems/hsNN.jl``) and the TOMLAB/AMPL/GAMS versions
that list ``x*`` and ``f*``. Where a transcription scales a least-squares objective by ½
(OptimizationProblems.jl does so for HS6, HS28, HS42, HS48, HS51, HS52) the book's unscaled
objective is kept here, because the published ``f*`` (e.g. 28 − 10√2 for HS42, 1859/349 for
HS52) belongs to the unscaled form.

Notes on individual problems, kept because they matter when reading the results:

* HS8 has a constant objective: every feasible point is optimal and the multipliers are 0.
* HS9 is periodic: ``f* = −0.5`` is attained at ``x = (12k − 3, 16k − 4)``; ``x*`` below is
  the one nearest the start.
* HS26 has a second minimiser with ``f = 0`` (x1 = x2 = x3 ≈ −1.2372); ``x*`` is the book's.
* HS47 contains ``(x2 − x3)³``, so ``f`` is unbounded below along the feasible set far from
  the start; the book's value ``f* = 0`` at ``x* = 1`` is a local minimum.
* HS77, HS78, HS79 publish ``x*`` to seven digits only; their ``f*`` are the book's
  0.24150513, −2.91970041 and 0.0787768209.

Functions take and return float64 torch tensors so that gradients, Jacobians and Hessians of
the Lagrangian come from autograd rather than from hand-written derivatives.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

Tensor = torch.Tensor
SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class Problem:
    """``min objective(x) s.t. constraints(x) = 0`` with its start, optimum and minimiser."""

    name: str
    x0: tuple[float, ...]
    objective: Callable[[Tensor], Tensor]
    constraints: Callable[[Tensor], Tensor]
    f_star: float
    x_star: tuple[float, ...]
    x_star_digits: int | None = None  # None: x* is exact; k: published to about k digits

    @property
    def n(self) -> int:
        return len(self.x0)


def _stack(*terms: Tensor) -> Tensor:
    return torch.stack(list(terms))


def _hs8_x_star() -> tuple[float, float]:
    x1 = math.sqrt((25.0 + math.sqrt(301.0)) / 2.0)  # x1² + x2² = 25 and x1·x2 = 9
    return x1, 9.0 / x1


PROBLEMS: dict[str, Problem] = {
    p.name: p
    for p in (
        Problem(
            "HS6",
            (-1.2, 1.0),
            lambda x: (1 - x[0]) ** 2,
            lambda x: _stack(10 * (x[1] - x[0] ** 2)),
            0.0,
            (1.0, 1.0),
        ),
        Problem(
            "HS7",
            (2.0, 2.0),
            lambda x: torch.log(1 + x[0] ** 2) - x[1],
            lambda x: _stack((1 + x[0] ** 2) ** 2 + x[1] ** 2 - 4),
            -math.sqrt(3.0),
            (0.0, math.sqrt(3.0)),
        ),
        Problem(
            "HS8",
            (2.0, 1.0),
            lambda x: 0.0 * x[0] - 1.0,
            lambda x: _stack(x[0] ** 2 + x[1] ** 2 - 25, x[0] * x[1] - 9),
            -1.0,
            _hs8_x_star(),
        ),
        Problem(
            "HS9",
            (0.0, 0.0),
            lambda x: torch.sin(math.pi * x[0] / 12) * torch.cos(math.pi * x[1] / 16),
            lambda x: _stack(4 * x[0] - 3 * x[1]),
            -0.5,
            (-3.0, -4.0),
        ),
        Problem(
            "HS26",
            (-2.6, 2.0, 2.0),
            lambda x: (x[0] - x[1]) ** 2 + (x[1] - x[2]) ** 4,
            lambda x: _stack((1 + x[1] ** 2) * x[0] + x[2] ** 4 - 3),
            0.0,
            (1.0, 1.0, 1.0),
        ),
        Problem(
            "HS27",
            (2.0, 2.0, 2.0),
            lambda x: 0.01 * (x[0] - 1) ** 2 + (x[1] - x[0] ** 2) ** 2,
            lambda x: _stack(x[0] + x[2] ** 2 + 1),
            0.04,
            (-1.0, 1.0, 0.0),
        ),
        Problem(
            "HS28",
            (-4.0, 1.0, 1.0),
            lambda x: (x[0] + x[1]) ** 2 + (x[1] + x[2]) ** 2,
            lambda x: _stack(x[0] + 2 * x[1] + 3 * x[2] - 1),
            0.0,
            (0.5, -0.5, 0.5),
        ),
        Problem(
            "HS39",
            (2.0, 2.0, 2.0, 2.0),
            lambda x: -x[0],
            lambda x: _stack(x[1] - x[0] ** 3 - x[2] ** 2, x[0] ** 2 - x[1] - x[3] ** 2),
            -1.0,
            (1.0, 1.0, 0.0, 0.0),
        ),
        Problem(
            "HS40",
            (0.8, 0.8, 0.8, 0.8),
            lambda x: -x[0] * x[1] * x[2] * x[3],
            lambda x: _stack(x[0] ** 3 + x[1] ** 2 - 1, x[0] ** 2 * x[3] - x[2], x[3] ** 2 - x[1]),
            -0.25,
            (2 ** (-1 / 3), 2 ** (-1 / 2), 2 ** (-11 / 12), 2 ** (-1 / 4)),
        ),
        Problem(
            "HS42",
            (1.0, 1.0, 1.0, 1.0),
            lambda x: (x[0] - 1) ** 2 + (x[1] - 2) ** 2 + (x[2] - 3) ** 2 + (x[3] - 4) ** 2,
            lambda x: _stack(x[0] - 2, x[2] ** 2 + x[3] ** 2 - 2),
            28 - 10 * SQRT2,
            (2.0, 2.0, 0.6 * SQRT2, 0.8 * SQRT2),
        ),
        Problem(
            "HS46",
            (SQRT2 / 2, 1.75, 0.5, 2.0, 2.0),
            lambda x: (x[0] - x[1]) ** 2 + (x[2] - 1) ** 2 + (x[3] - 1) ** 4 + (x[4] - 1) ** 6,
            lambda x: _stack(x[0] ** 2 * x[3] + torch.sin(x[3] - x[4]) - 1, x[1] + x[2] ** 4 * x[3] ** 2 - 2),
            0.0,
            (1.0,) * 5,
        ),
        Problem(
            "HS47",
            (2.0, SQRT2, -1.0, 2 - SQRT2, 0.5),
            lambda x: (x[0] - x[1]) ** 2 + (x[1] - x[2]) ** 3 + (x[2] - x[3]) ** 4 + (x[3] - x[4]) ** 4,
            lambda x: _stack(x[0] + x[1] ** 2 + x[2] ** 3 - 3, x[1] - x[2] ** 2 + x[3] - 1, x[0] * x[4] - 1),
            0.0,
            (1.0,) * 5,
        ),
        Problem(
            "HS48",
            (3.0, 5.0, -3.0, 2.0, -2.0),
            lambda x: (x[0] - 1) ** 2 + (x[1] - x[2]) ** 2 + (x[3] - x[4]) ** 2,
            lambda x: _stack(x[0] + x[1] + x[2] + x[3] + x[4] - 5, x[2] - 2 * (x[3] + x[4]) + 3),
            0.0,
            (1.0,) * 5,
        ),
        Problem(
            "HS49",
            (10.0, 7.0, 2.0, -3.0, 0.8),
            lambda x: (x[0] - x[1]) ** 2 + (x[2] - 1) ** 2 + (x[3] - 1) ** 4 + (x[4] - 1) ** 6,
            lambda x: _stack(x[0] + x[1] + x[2] + 4 * x[3] - 7, x[2] + 5 * x[4] - 6),
            0.0,
            (1.0,) * 5,
        ),
        Problem(
            "HS50",
            (35.0, -31.0, 11.0, 5.0, -5.0),
            lambda x: (x[0] - x[1]) ** 2 + (x[1] - x[2]) ** 2 + (x[2] - x[3]) ** 4 + (x[3] - x[4]) ** 2,
            lambda x: _stack(
                x[0] + 2 * x[1] + 3 * x[2] - 6, x[1] + 2 * x[2] + 3 * x[3] - 6, x[2] + 2 * x[3] + 3 * x[4] - 6
            ),
            0.0,
            (1.0,) * 5,
        ),
        Problem(
            "HS51",
            (2.5, 0.5, 2.0, -1.0, 0.5),
            lambda x: (x[0] - x[1]) ** 2 + (x[1] + x[2] - 2) ** 2 + (x[3] - 1) ** 2 + (x[4] - 1) ** 2,
            lambda x: _stack(x[0] + 3 * x[1] - 4, x[2] + x[3] - 2 * x[4], x[1] - x[4]),
            0.0,
            (1.0,) * 5,
        ),
        Problem(
            "HS52",
            (2.0,) * 5,
            lambda x: (4 * x[0] - x[1]) ** 2 + (x[1] + x[2] - 2) ** 2 + (x[3] - 1) ** 2 + (x[4] - 1) ** 2,
            lambda x: _stack(x[0] + 3 * x[1], x[2] + x[3] - 2 * x[4], x[1] - x[4]),
            1859 / 349,
            (-33 / 349, 11 / 349, 180 / 349, -158 / 349, 11 / 349),
        ),
        Problem(
            "HS61",
            (0.0, 0.0, 0.0),
            lambda x: 4 * x[0] ** 2 + 2 * x[1] ** 2 + 2 * x[2] ** 2 - 33 * x[0] + 16 * x[1] - 24 * x[2],
            lambda x: _stack(3 * x[0] - 2 * x[1] ** 2 - 7, 4 * x[0] - x[2] ** 2 - 11),
            -143.6461422,
            (5.32677016, -2.11899864, 3.21046424),
            x_star_digits=8,
        ),
        Problem(
            "HS77",
            (2.0,) * 5,
            lambda x: (
                (x[0] - 1) ** 2 + (x[0] - x[1]) ** 2 + (x[2] - 1) ** 2 + (x[3] - 1) ** 4 + (x[4] - 1) ** 6
            ),
            lambda x: _stack(
                x[0] ** 2 * x[3] + torch.sin(x[3] - x[4]) - 2 * SQRT2,
                x[1] + x[2] ** 4 * x[3] ** 2 - 8 - SQRT2,
            ),
            0.24150513,
            (1.166172, 1.182111, 1.380257, 1.506036, 0.6109203),
            x_star_digits=6,
        ),
        Problem(
            "HS78",
            (-2.0, 1.5, 2.0, -1.0, -1.0),
            lambda x: x[0] * x[1] * x[2] * x[3] * x[4],
            lambda x: _stack(
                x[0] ** 2 + x[1] ** 2 + x[2] ** 2 + x[3] ** 2 + x[4] ** 2 - 10,
                x[1] * x[2] - 5 * x[3] * x[4],
                x[0] ** 3 + x[1] ** 3 + 1,
            ),
            -2.91970041,
            (-1.717142, 1.595708, 1.827248, -0.7636429, -0.7636435),
            x_star_digits=6,
        ),
        Problem(
            "HS79",
            (2.0,) * 5,
            lambda x: (
                (x[0] - 1) ** 2
                + (x[0] - x[1]) ** 2
                + (x[1] - x[2]) ** 2
                + (x[2] - x[3]) ** 4
                + (x[3] - x[4]) ** 4
            ),
            lambda x: _stack(
                x[0] + x[1] ** 2 + x[2] ** 3 - 2 - 3 * SQRT2,
                x[1] - x[2] ** 2 + x[3] + 2 - 2 * SQRT2,
                x[0] * x[4] - 2,
            ),
            0.0787768209,
            (1.191127, 1.362603, 1.472818, 1.635017, 1.679081),
            x_star_digits=6,
        ),
    )
}
