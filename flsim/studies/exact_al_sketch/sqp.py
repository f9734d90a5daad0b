"""SQP on an exact augmented Lagrangian with sketch-and-project Newton solves (AdaSketch-Newton).

The method is Algorithm 1 of Hong, Na, Mahoney & Kolar, *Constrained optimization via exact
augmented Lagrangian and randomized iterative sketching*, ICML 2023 (PMLR 202), with its
constants taken from the authors' public code (github.com/IlgeeHong/AdaSketch-Newton,
``CUTEst/AdaSketchNewtonGV``). For ``min f(x) s.t. c(x) = 0`` with Lagrangian
``L = f + λᵀc``, ``G = ∇c``, ``H = ∇²ₓL``, one iteration:

1. **Newton system.** ``K z = b`` with ``K = [[B, Gᵀ], [G, 0]]`` and ``b = −(∇ₓL, c)``. ``B = H``
   unless the reduced Hessian ``ZᵀHZ`` (``Z`` spans null(G)) has an eigenvalue below 1e-6, then
   ``B = H + (ξ_B + ‖H‖)I``, which makes ``B`` positive definite on the whole space.
2. **Sketch-and-project.** From ``z = 0``, repeat ``z ← z − KᵀS(SᵀKKᵀS)†Sᵀ(Kz − b)`` with a
   fresh Gaussian vector ``S`` (the paper's "GV" sketch) until the *adaptive accuracy condition*
   ``‖K‖·Ψ·‖Kz − b‖ ≤ δ‖b‖`` holds, where ``Ψ = 20·max(‖B‖², 1)/(min(ξ_G, 1)·min(ξ_B, 1))``
   bounds ``‖K⁻¹‖`` (``ξ_G = λ_min(GGᵀ)``) and ``δ = min(δ, (½ − β)ν/((1 + μ + ν)Υ²Ψ²))``
   with ``Υ = max(‖G‖, ‖H‖, 1)``.
3. **Merit parameters.** The merit is the exact augmented Lagrangian
   ``L_{μ,ν} = L + (μ/2)‖c‖² + (ν/2)‖∇ₓL‖²``. If ``∇L_{μ,ν}ᵀz > −(ν/2)‖b‖²`` the direction is
   not a sufficient descent direction: ``μ ← μ·ϱ²``, ``ν ← ν/ϱ``, ``δ ← min(δ/ϱ⁴, δ_trial)``,
   and the sketch solve continues (warm) to the new accuracy.
4. **Armijo.** ``α = 1`` halved until ``L_{μ,ν}(x + αΔx, λ + αΔλ) ≤ L_{μ,ν} + αβ∇L_{μ,ν}ᵀz``.

Near a solution satisfying second-order sufficiency the paper proves that ``α = 1`` passes the
Armijo test, so the method converges linearly there (superlinearly if ``δ`` is driven to 0).
Its analysis assumes LICQ (``GGᵀ`` uniformly nonsingular) and a reduced Hessian bounded away
from 0 along the iterates; the cost of a sketch solve grows like ``κ(K)²·log(1/accuracy)``.

Deviations from the authors' code, all deliberate: (a) the merit gradient uses the Hessian of
the *Lagrangian*, ``∇ₓL_{μ,ν} = (I + νH)∇ₓL + μGᵀc``, which is the exact derivative of the
merit; the code multiplies by the objective's Hessian, which is only equal for linear
constraints. (b) Like the code, ``δ`` is floored at 1e-6 and the penalty updates stop at
``μ > 1e8`` or ``ν < 1e-8``; a sketch solve stops after ``max_inner`` projections. Not in the
code: a run stops once it has spent ``inner_budget`` projections in all (a time budget; the
code instead allows 10⁴ outer iterations), reported as status ``inner_budget``. (c) A
Jacobian with ``λ_min(GGᵀ) < 1e-2`` ends the run as a failure, as in the code. (d) Matrix
norms are Frobenius norms (Julia's ``norm`` of a matrix), an upper bound on the spectral norm.

``solve_sqp`` without a generator runs the same algorithm with ``z = K⁻¹b`` (the "exact-solve
SQP" comparison).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.linalg import solve_triangular
from scipy.optimize import NonlinearConstraint, minimize

from flsim.studies.exact_al_sketch.hock_schittkowski import Problem

Array = np.ndarray
JACOBIAN_FLOOR = 1e-2  # λ_min(GGᵀ) below this ends a run (authors' code)
REDUCED_HESSIAN_FLOOR = 1e-6  # reduced-Hessian eigenvalue that triggers the modification
MAX_BACKTRACKS = 60


@dataclass(frozen=True)
class SQPSettings:
    """Constants of Algorithm 1; defaults from the authors' ``Parameter/Param.jl`` (``Aug``)."""

    mu0: float = 1.0  # μ, weight of ‖c‖²
    nu0: float = 0.1  # ν, weight of ‖∇ₓL‖²
    delta0: float = 0.1  # initial accuracy δ
    delta_floor: float = 1e-6
    xi_b: float = 0.1  # ξ_B, curvature of the modified Hessian
    beta: float = 0.1  # Armijo constant, < ½
    rho: float = 1.5  # ϱ, penalty growth factor ("nu" in the code)
    backtrack: float = 0.5
    tolerance: float = 1e-8  # stop when ‖(∇ₓL, c)‖ ≤ tolerance
    max_iterations: int = 500
    max_inner: int = 100_000  # projections per sketch solve (authors' code: 1e5)
    inner_budget: int = 3_000_000  # projections per run; a run that spends them stops


@dataclass
class Evaluation:
    """Everything Algorithm 1 needs at one primal-dual point."""

    x: Array
    lam: Array
    f: float
    c: Array
    jac: Array
    grad_lag: Array
    hess_lag: Array | None = None

    @property
    def kkt(self) -> float:
        return float(np.sqrt(self.grad_lag @ self.grad_lag + self.c @ self.c))


class Oracle:
    """Objective, constraints and their derivatives of a :class:`Problem` by torch autograd (float64)."""

    def __init__(self, problem: Problem):
        self.problem = problem
        self.m = len(problem.constraints(torch.tensor(problem.x0, dtype=torch.float64)))

    def _derivatives(self, x: Array, weights: Array | None, hessian: bool) -> tuple:
        """``f, ∇f, c, G`` at ``x`` and, if asked, ``∇²(f·w₀ + Σ wᵢcᵢ)`` for ``weights = (w₀, w)``."""
        xt = torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
        f, c = self.problem.objective(xt), self.problem.constraints(xt)
        rows = [torch.autograd.grad(ci, xt, retain_graph=True)[0] for ci in c]
        grad_f = torch.autograd.grad(f, xt, retain_graph=True, allow_unused=True)[0]
        grad_f = torch.zeros_like(xt) if grad_f is None else grad_f
        jac = torch.stack(rows).detach().numpy()
        hess = None
        if hessian and weights is not None:
            w0, w = float(weights[0]), torch.as_tensor(np.asarray(weights[1], dtype=np.float64))
            weighted_grad = torch.autograd.grad(w0 * f + w @ c, xt, create_graph=True)[0]
            hess = np.stack([_second(weighted_grad[i], xt) for i in range(len(x))])
        return float(f.detach()), grad_f.detach().numpy(), c.detach().numpy(), jac, hess

    def f(self, x: Array) -> float:
        return self._derivatives(x, None, False)[0]

    def grad_f(self, x: Array) -> Array:
        return self._derivatives(x, None, False)[1]

    def c(self, x: Array) -> Array:
        return self._derivatives(x, None, False)[2]

    def jac(self, x: Array) -> Array:
        return self._derivatives(x, None, False)[3]

    def hess_lagrangian(self, x: Array, lam: Array, objective_weight: float = 1.0) -> Array:
        return self._derivatives(x, (objective_weight, lam), True)[4]

    def evaluate(self, x: Array, lam: Array, with_hessian: bool = True) -> Evaluation:
        f, grad_f, c, jac, hess = self._derivatives(x, (1.0, lam), with_hessian)
        return Evaluation(x, lam, f, c, jac, grad_f + jac.T @ lam, hess)


def _second(component: torch.Tensor, xt: torch.Tensor) -> Array:
    """One row of a Hessian: the gradient of one component of a gradient (zero if constant)."""
    if not component.requires_grad:
        return np.zeros(len(xt))
    row = torch.autograd.grad(component, xt, retain_graph=True, allow_unused=True)[0]
    return np.zeros(len(xt)) if row is None else row.detach().numpy()


def least_squares_kkt(oracle: Oracle, x: Array) -> float:
    """‖(∇f + Gᵀλ, c)‖ with the least-squares multipliers λ = argmin ‖∇f + Gᵀλ‖."""
    g, jac, c = oracle.grad_f(x), oracle.jac(x), oracle.c(x)
    lam = np.linalg.lstsq(jac.T, -g, rcond=None)[0]
    residual = g + jac.T @ lam
    return float(np.sqrt(residual @ residual + c @ c))


def sketch_and_project(
    kkt: Array,
    rhs: Array,
    z: Array,
    threshold: float,
    rng: np.random.Generator,
    max_iter: int = 100_000,
    block: int = 64,
) -> tuple[Array, int]:
    """Iterate ``z ← z − KᵀS(SᵀKKᵀS)†Sᵀ(Kz − r)``, ``S = s`` a Gaussian vector, to ``‖Kz − r‖ ≤ threshold``.

    With a vector sketch one projection is ``z ← z − a·w``, ``w = Kᵀs``, ``a = sᵀ(Kz − r)/‖w‖²``,
    and the residual moves by ``−a·Kw``. ``block`` consecutive projections are computed at once
    without changing them: with ``t_j = s_j/‖w_j‖²`` and ``u_j = Kw_j``, the coefficients obey
    ``a_j = t_jᵀr₀ − Σ_{k<j} (t_jᵀu_k)·a_k``, a unit lower-triangular system, and the residual
    after ``j`` projections is ``r₀ − Σ_{k<j} a_k u_k``. The first ``j`` whose residual meets the
    threshold ends the solve, exactly where the one-at-a-time loop would stop (up to rounding);
    the residual is recomputed from ``z`` after every block. Returns ``z`` and the projections taken.
    """
    z = z.copy()
    residual = kkt @ z - rhs
    taken, target = 0, threshold**2
    while residual @ residual > target and taken < max_iter:
        count = min(block, max_iter - taken)
        sketches = rng.standard_normal((count, len(rhs)))
        images = sketches @ kkt  # rows w_j = Kᵀs_j
        scaled = sketches / np.maximum(np.einsum("ij,ij->i", images, images), 1e-300)[:, None]
        moves = images @ kkt.T  # rows u_j = Kw_j
        coupling = np.tril(scaled @ moves.T, -1)
        coef = solve_triangular(coupling, scaled @ residual, lower=True, unit_diagonal=True)
        partial = residual - np.cumsum(coef[:, None] * moves, axis=0)  # row j: after j + 1 steps
        met = np.flatnonzero(np.einsum("ij,ij->i", partial, partial) <= target)
        used = int(met[0]) + 1 if met.size else count
        z -= coef[:used] @ images[:used]
        taken += used
        residual = kkt @ z - rhs
    return z, taken


def modified_hessian(hess: Array, jac: Array, xi_b: float) -> Array:
    """``H``, or ``H + (ξ_B + ‖H‖)I`` when ``H`` is not positive definite on null(G)."""
    n, m = jac.shape[1], jac.shape[0]
    if m >= n:
        return hess
    q, _ = np.linalg.qr(jac.T, mode="complete")
    null_basis = q[:, m:]
    if np.linalg.eigvalsh(null_basis.T @ hess @ null_basis).min() >= REDUCED_HESSIAN_FLOOR:
        return hess
    return hess + (xi_b + np.linalg.norm(hess)) * np.eye(n)


def merit(ev: Evaluation, mu: float, nu: float) -> float:
    """The exact augmented Lagrangian ``f + λᵀc + (μ/2)‖c‖² + (ν/2)‖∇ₓL‖²``."""
    return ev.f + ev.lam @ ev.c + 0.5 * mu * (ev.c @ ev.c) + 0.5 * nu * (ev.grad_lag @ ev.grad_lag)


def merit_gradient(ev: Evaluation, mu: float, nu: float) -> Array:
    """``((I + νH)∇ₓL + μGᵀc, c + νG∇ₓL)``: the exact gradient of :func:`merit`."""
    assert ev.hess_lag is not None
    gx = ev.grad_lag + nu * ev.hess_lag @ ev.grad_lag + mu * ev.jac.T @ ev.c
    return np.concatenate([gx, ev.c + nu * ev.jac @ ev.grad_lag])


@dataclass
class Trace:
    """What one run of Algorithm 1 did, iteration by iteration."""

    kkt: list[float] = field(default_factory=list)
    alpha: list[float] = field(default_factory=list)
    inner: list[int] = field(default_factory=list)
    mu: list[float] = field(default_factory=list)
    status: str = "max_iterations"


@dataclass
class Penalties:
    """The adaptive quantities carried from one iteration to the next."""

    mu: float
    nu: float
    delta: float


def _delta_trial(s: SQPSettings, pen: Penalties, upsilon: float, psi: float) -> float:
    return (0.5 - s.beta) * pen.nu / ((1 + pen.mu + pen.nu) * upsilon**2 * psi**2)


def newton_direction(
    ev: Evaluation, pen: Penalties, s: SQPSettings, solve: Callable[..., tuple[Array, int]]
) -> tuple[Array, int] | None:
    """Steps 1–3: an (inexact) Newton direction that descends on the merit; None if G is singular."""
    assert ev.hess_lag is not None
    xi_g = float(np.linalg.eigvalsh(ev.jac @ ev.jac.T).min())
    if xi_g < JACOBIAN_FLOOR:
        return None
    b_mat = modified_hessian(ev.hess_lag, ev.jac, s.xi_b)
    psi = 20 * max(np.linalg.norm(b_mat) ** 2, 1.0) / (min(xi_g, 1.0) * min(s.xi_b, 1.0))
    upsilon = max(np.linalg.norm(ev.jac), np.linalg.norm(ev.hess_lag), 1.0)
    pen.delta = max(min(pen.delta, _delta_trial(s, pen, upsilon, psi)), s.delta_floor)
    m = len(ev.c)
    kkt = np.block([[b_mat, ev.jac.T], [ev.jac, np.zeros((m, m))]])
    rhs = -np.concatenate([ev.grad_lag, ev.c])
    k_norm, rhs_norm = np.linalg.norm(kkt), np.linalg.norm(rhs)
    z, inner = np.zeros_like(rhs), 0
    while True:
        z, taken = solve(kkt, rhs, z, pen.delta * rhs_norm / (k_norm * psi))
        inner += taken
        if pen.mu > 1e8 or pen.nu < 1e-8:
            return z, inner
        if merit_gradient(ev, pen.mu, pen.nu) @ z <= -0.5 * pen.nu * rhs_norm**2:
            return z, inner
        pen.mu *= s.rho**2
        pen.nu /= s.rho
        trial = _delta_trial(s, pen, upsilon, psi)
        pen.delta = max(min(pen.delta / s.rho**4, trial), s.delta_floor)


def armijo(oracle: Oracle, ev: Evaluation, z: Array, pen: Penalties, s: SQPSettings) -> float:
    """Step 4: the largest ``α = backtrack^k`` with sufficient decrease of the merit."""
    n = len(ev.x)
    base, slope = merit(ev, pen.mu, pen.nu), merit_gradient(ev, pen.mu, pen.nu) @ z
    alpha = 1.0
    for _ in range(MAX_BACKTRACKS):
        trial = oracle.evaluate(ev.x + alpha * z[:n], ev.lam + alpha * z[n:], with_hessian=False)
        if merit(trial, pen.mu, pen.nu) <= base + alpha * s.beta * slope:
            break
        alpha *= s.backtrack
    return alpha


def solve_sqp(
    oracle: Oracle, s: SQPSettings, rng: np.random.Generator | None = None
) -> tuple[Evaluation, Trace]:
    """Algorithm 1 from ``(x0, λ0 = 0)``; sketched solves with ``rng``, exact solves without."""

    def solve(kkt: Array, rhs: Array, z: Array, threshold: float) -> tuple[Array, int]:
        if rng is None:
            return np.linalg.solve(kkt, rhs), 0
        return sketch_and_project(kkt, rhs, z, threshold, rng, s.max_inner)

    problem = oracle.problem
    pen = Penalties(s.mu0, s.nu0, s.delta0)
    ev = oracle.evaluate(np.array(problem.x0, dtype=np.float64), np.zeros(oracle.m))
    trace = Trace(kkt=[ev.kkt])
    for _ in range(s.max_iterations):
        if ev.kkt <= s.tolerance:
            trace.status = "converged"
            break
        found = newton_direction(ev, pen, s, solve)
        if found is None:
            trace.status = "singular_jacobian"
            break
        z, inner = found
        alpha = armijo(oracle, ev, z, pen, s)
        n = len(ev.x)
        ev = oracle.evaluate(ev.x + alpha * z[:n], ev.lam + alpha * z[n:])
        trace.kkt.append(ev.kkt)
        trace.alpha.append(alpha)
        trace.inner.append(inner)
        trace.mu.append(pen.mu)
        if sum(trace.inner) >= s.inner_budget:
            trace.status = "inner_budget" if ev.kkt > s.tolerance else "converged"
            break
    else:
        if ev.kkt <= s.tolerance:
            trace.status = "converged"
    return ev, trace


def solve_trust_constr(oracle: Oracle, tolerance: float, max_iterations: int) -> tuple[Array, int]:
    """``scipy.optimize.minimize(method="trust-constr")`` with exact derivatives."""
    m = oracle.m
    constraint = NonlinearConstraint(
        oracle.c,
        np.zeros(m),
        np.zeros(m),
        jac=oracle.jac,
        hess=lambda x, v: oracle.hess_lagrangian(x, v, 0.0),
    )
    with warnings.catch_warnings():  # HS61's start has a rank-deficient Jacobian; scipy warns and copes
        warnings.filterwarnings("ignore", message="Singular Jacobian matrix", category=UserWarning)
        result = minimize(
            oracle.f,
            np.array(oracle.problem.x0, dtype=np.float64),
            jac=oracle.grad_f,
            hess=lambda x: oracle.hess_lagrangian(x, np.zeros(m)),
            method="trust-constr",
            constraints=[constraint],
            options={"gtol": tolerance, "xtol": 1e-14, "maxiter": max_iterations},
        )
    return np.asarray(result.x), int(result.nit)
