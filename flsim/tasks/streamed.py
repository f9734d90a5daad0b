"""Exact optima of large convex problems from one streamed pass over the data (issue 17).

A lazy population of 10⁶ clients never holds its training pool, so the optimum of least
squares comes from its sufficient statistics AᵀA, Aᵀb and bᵀb, accumulated over chunks of
clients, with one solve at the end; the global loss then is a quadratic form in x − x*,
which is O(d²) per evaluation instead of a pass over every sample.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import Tensor


def matmul(a: Tensor, b: Tensor) -> np.ndarray:
    """``a @ b`` through torch, whose thread count every host sets alike (``configure_torch``).

    NumPy's BLAS picks its own thread count (many in a driver, one in a Ray worker), and a
    threaded GEMM sums in another order: streamed over 10⁶ clients, that shows in the last bits
    of x*, and the local and Ray runs' optimality gaps would differ.
    """
    return (a @ b).numpy()


class LeastSquaresStats:
    """Running AᵀA, Aᵀb, bᵀb and the row count of a least-squares problem."""

    def __init__(self, dim: int) -> None:
        self.gram = np.zeros((dim, dim))
        self.moment = np.zeros(dim)
        self.energy = 0.0
        self.rows = 0

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        ta, tb = torch.from_numpy(np.ascontiguousarray(a)), torch.from_numpy(np.ascontiguousarray(b))
        self.gram += matmul(ta.T, ta)
        self.moment += matmul(ta.T, tb)
        self.energy += float(tb @ tb)
        self.rows += a.shape[0]

    def add_chunks(self, chunks: Iterable[tuple[np.ndarray, np.ndarray]]) -> LeastSquaresStats:
        for a, b in chunks:
            self.add(a, b)
        return self


def streamed_least_squares(stats: LeastSquaresStats, l2: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(x*, H, f(x*)) of (1/(2n))‖Ax − b‖² + (l2/2)‖x‖² from its sufficient statistics.

    x* solves H x = g with H = AᵀA/n + l2·I and g = Aᵀb/n (minimum-norm if H is singular),
    refined once. At x*, f(x*) = bᵀb/(2n) − x*ᵀg/2, which avoids forming the residuals.
    """
    n = stats.rows
    dim = stats.moment.shape[0]
    hessian = stats.gram / n + l2 * np.eye(dim)
    hessian = 0.5 * (hessian + hessian.T)
    g = stats.moment / n
    x = np.linalg.lstsq(hessian, g, rcond=None)[0]
    x = x + np.linalg.lstsq(hessian, g - hessian @ x, rcond=None)[0]
    value = 0.5 * stats.energy / n - 0.5 * float(x @ g)
    return x, hessian, value


def quadratic_loss_oracle(optimum: Tensor, hessian: np.ndarray, value: float) -> Callable[[Tensor], float]:
    """f(x) = f(x*) + ½ (x − x*)ᵀ H (x − x*), exact for a quadratic f minimised at x*.

    Writing the loss this way also keeps the optimality gap free of the cancellation that
    subtracting two O(1) losses would bring near x*.
    """
    h = torch.from_numpy(np.ascontiguousarray(hessian))

    def loss(params: Tensor) -> float:
        d = params.to(torch.float64) - optimum
        return value + 0.5 * float(torch.dot(d, torch.mv(h, d)))

    return loss
