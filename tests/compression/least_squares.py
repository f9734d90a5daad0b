"""A tiny deterministic heterogeneous least-squares problem for the error-feedback tests."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class LeastSquares:
    """f(x) = (1/n) Σ_i ½‖A_i x − b_i‖², clients with different A_i and different local optima.

    The local minimisers are far apart (‖∇f_i(x*)‖ ≈ 10), which is what makes uncorrected
    compression stall and EF14 level off.
    """

    a: tuple[Tensor, ...]
    b: tuple[Tensor, ...]
    x_star: Tensor
    f_star: float

    @property
    def n(self) -> int:
        return len(self.a)

    @property
    def d(self) -> int:
        return int(self.a[0].shape[1])

    def grad(self, i: int, x: Tensor) -> Tensor:
        return self.a[i].T @ (self.a[i] @ x - self.b[i])

    def full_grad(self, x: Tensor) -> Tensor:
        return torch.stack([self.grad(i, x) for i in range(self.n)]).mean(0)

    def f(self, x: Tensor) -> float:
        return float(
            sum(0.5 * ((a @ x - b) ** 2).sum() for a, b in zip(self.a, self.b, strict=True)) / self.n
        )

    def gap(self, x: Tensor) -> float:
        return self.f(x) - self.f_star


def make_least_squares(d: int = 20, n: int = 5, m: int = 40, seed: int = 0) -> LeastSquares:
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    a = tuple(torch.randn(m, d, generator=g, dtype=f64) / m**0.5 for _ in range(n))
    local_opt = [3 * torch.randn(d, generator=g, dtype=f64) for _ in range(n)]
    b = tuple(a[i] @ local_opt[i] + 0.1 * torch.randn(m, generator=g, dtype=f64) for i in range(n))
    hessian = sum(ai.T @ ai for ai in a) / n
    rhs = sum(ai.T @ bi for ai, bi in zip(a, b, strict=True)) / n
    x_star = torch.linalg.solve(hessian, rhs)
    problem = LeastSquares(a=a, b=b, x_star=x_star, f_star=0.0)
    return LeastSquares(a=a, b=b, x_star=x_star, f_star=problem.f(x_star))
