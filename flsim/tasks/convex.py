"""Heterogeneous least squares and logistic regression with exactly known optima.

These tasks exist to measure optimisation error: each client has its own data
distribution (its own optimum and feature distribution, controlled by ``heterogeneity``;
0 means iid clients), every client holds the same number of samples (so the global
objective f = Σ_i (n_i/n) f_i is also (1/N) Σ_i f_i), and the global minimiser x* is
computed to machine precision so that ``optimality_gap`` = f(x) − f(x*) is meaningful down
to ~1e-12. Objectives are closed-form in float64 (no ``nn.Module``): faster on tiny
problems and free of autograd rounding.

Per-client constants for DADAO-type step sizes are provided as ``Task.smoothness`` (L_i)
and ``Task.strong_convexity`` (μ_i).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from flsim.config.errors import ConfigError
from flsim.config.schema import TaskConfig
from flsim.rng import numpy_rng
from flsim.tasks.base import Shard, Task
from flsim.tasks.client_streams import client_generators
from flsim.tasks.common import round_significant, rowdot, split_evenly, to_tensor, warn_unused_partition
from flsim.tasks.lazy_clients import LazyClients, LazyConstants
from flsim.tasks.models import resolve_model_name
from flsim.tasks.params import MAX_DIM, MAX_SAMPLES, DatasetParams
from flsim.tasks.streamed import LeastSquaresStats, matmul, quadratic_loss_oracle, streamed_least_squares

#: Newton's method stops when the global gradient norm is below this.
NEWTON_TOLERANCE = 1e-12
#: ...and is accepted if it stalls (rounding) below this.
NEWTON_ACCEPT = 1e-10
NEWTON_MAX_ITERATIONS = 100
#: Training pools of more numbers than this are built lazily and their optimum streamed.
LAZY_MIN_FLOATS = 2**19
#: Clients per chunk in the streamed passes over a lazy population.
STREAM_CHUNK = 2048


class _RegularisedLinearObjective:
    """What both objectives share: float64 parameters acting through Ax, the start point, and
    the term (l2/2)‖x‖² added to every batch's data loss (and l2·x to its gradient)."""

    def __init__(self, dim: int, l2: float) -> None:
        self.dim = dim
        self.dtype = torch.float64
        self.l2 = l2

    def init_params(self, generator: torch.Generator) -> Tensor:
        """Zeros: the problem is convex, so the start point carries no symmetry issue."""
        return torch.zeros(self.dim, dtype=self.dtype)

    def predict(self, params: Tensor, x: Tensor) -> Tensor:
        return torch.mv(x, params)

    def _data_loss_and_grad(self, params: Tensor, x: Tensor, y: Tensor) -> tuple[float, Tensor]:
        raise NotImplementedError

    def _data_loss(self, params: Tensor, x: Tensor, y: Tensor) -> float:
        raise NotImplementedError

    def loss_and_grad(self, params: Tensor, x: Tensor, y: Tensor) -> tuple[float, Tensor]:
        loss, grad = self._data_loss_and_grad(params, x, y)
        if self.l2:
            grad = grad + self.l2 * params
            loss += 0.5 * self.l2 * float(torch.dot(params, params))
        return loss, grad

    def loss(self, params: Tensor, x: Tensor, y: Tensor) -> float:
        value = self._data_loss(params, x, y)
        if self.l2:
            value += 0.5 * self.l2 * float(torch.dot(params, params))
        return value


class LeastSquaresObjective(_RegularisedLinearObjective):
    """f(x; A, b) = (1/(2n)) ‖A x − b‖² + (l2/2) ‖x‖², in float64.

    The l2 term is added on every batch, so the batch loss is an unbiased estimate of the
    regularised client objective and the global objective is Σ_i (n_i/n) f_i.
    """

    def _data_loss_and_grad(self, params: Tensor, x: Tensor, y: Tensor) -> tuple[float, Tensor]:
        n = x.shape[0]
        residual = torch.mv(x, params) - y
        return 0.5 * float(torch.dot(residual, residual)) / n, torch.mv(x.T, residual) / n

    def _data_loss(self, params: Tensor, x: Tensor, y: Tensor) -> float:
        residual = torch.mv(x, params) - y
        return 0.5 * float(torch.dot(residual, residual)) / x.shape[0]


class LogisticObjective(_RegularisedLinearObjective):
    """Binary logistic loss mean_j log(1 + exp(−s_j a_jᵀx)) + (l2/2)‖x‖², s = 2y − 1, float64.

    Labels are stored as float64 in {0, 1}. The loss uses ``logaddexp`` (exact to rounding for
    all margins; ``softplus`` switches to a linear approximation above 20) and the gradient
    Aᵀ(σ(Ax) − y)/n + l2·x. ``predict`` returns the logit, so ``logit > 0`` is the class.
    """

    @staticmethod
    def _logistic_loss(logits: Tensor, y: Tensor) -> float:
        margins = (2.0 * y - 1.0) * logits
        return float(torch.logaddexp(torch.zeros_like(margins), -margins).mean())

    def _data_loss_and_grad(self, params: Tensor, x: Tensor, y: Tensor) -> tuple[float, Tensor]:
        logits = torch.mv(x, params)
        return self._logistic_loss(logits, y), torch.mv(x.T, torch.sigmoid(logits) - y) / x.shape[0]

    def _data_loss(self, params: Tensor, x: Tensor, y: Tensor) -> float:
        return self._logistic_loss(torch.mv(x, params), y)


# --------------------------------------------------------------------------- optima


def least_squares_optimum(a: np.ndarray, b: np.ndarray, l2: float) -> np.ndarray:
    """argmin (1/(2n))‖Ax − b‖² + (l2/2)‖x‖², exactly (the minimum-norm one if not unique).

    Solved as the stacked least-squares problem [A/√n; √l2 I] x ≈ [b/√n; 0], which has the
    same normal equations (AᵀA/n + l2 I) x = Aᵀb/n but half the condition number's
    exponent, followed by one step of iterative refinement.
    """
    n, d = a.shape
    scale = 1.0 / math.sqrt(n)
    stacked = np.vstack([a * scale, math.sqrt(l2) * np.eye(d)]) if l2 > 0 else a * scale
    rhs = np.concatenate([b * scale, np.zeros(d)]) if l2 > 0 else b * scale
    x = np.linalg.lstsq(stacked, rhs, rcond=None)[0]
    x = x + np.linalg.lstsq(stacked, rhs - stacked @ x, rcond=None)[0]
    return x


def _logistic_parts(a: np.ndarray, y: np.ndarray, x: np.ndarray, l2: float) -> tuple[float, np.ndarray]:
    logits = a @ x
    margins = (2.0 * y - 1.0) * logits
    loss = float(np.logaddexp(0.0, -margins).mean()) + 0.5 * l2 * float(x @ x)
    prob = 0.5 * (1.0 + np.tanh(0.5 * logits))  # σ(z), overflow-free
    grad = a.T @ (prob - y) / a.shape[0] + l2 * x
    return loss, grad


def _logistic_hessian(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Σ_j σ_j(1 − σ_j) a_j a_jᵀ over these rows (not yet divided by n, no l2)."""
    logits = a @ x
    prob = 0.5 * (1.0 + np.tanh(0.5 * logits))
    weights = prob * (1.0 - prob)
    return (a.T * weights) @ a


def logistic_optimum(a: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """argmin of the regularised logistic loss by Newton's method until ‖∇f‖ < 1e-12.

    A step is accepted if it satisfies Armijo's condition *or* reduces the gradient norm:
    near x* the loss decrease (~‖∇f‖²) falls below float64 resolution of the loss while the
    Newton step still shrinks the gradient quadratically.

    With l2 = 0 and linearly separable data there is no minimiser (the loss tends to 0 as
    ‖x‖ → ∞), yet Newton's iterates reach a tiny gradient far out; a point that classifies
    every sample correctly cannot be stationary otherwise, so that case is rejected.
    """
    n, d = a.shape
    return _newton(
        lambda x: _logistic_parts(a, y, x, l2),
        lambda x: _logistic_hessian(a, x) / n + l2 * np.eye(d),
        lambda x: bool(np.all((2.0 * y - 1.0) * (a @ x) > 0)),
        d,
        l2,
    )


def _newton(
    parts: Callable[[np.ndarray], tuple[float, np.ndarray]],
    hessian_at: Callable[[np.ndarray], np.ndarray],
    separable_at: Callable[[np.ndarray], bool],
    d: int,
    l2: float,
) -> np.ndarray:
    """The damped Newton loop of :func:`logistic_optimum`, over any way of summing the data
    (one pooled array, or streamed chunks of a lazy population)."""
    x = np.zeros(d)
    loss, grad = parts(x)
    for _ in range(NEWTON_MAX_ITERATIONS):
        gnorm = float(np.linalg.norm(grad))
        if gnorm < NEWTON_TOLERANCE:
            break
        hessian = hessian_at(x)
        try:
            step = np.linalg.solve(hessian, grad)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(hessian, grad, rcond=None)[0]
        slope = float(grad @ step)
        t = 1.0
        while t > 1e-12:
            candidate = x - t * step
            new_loss, new_grad = parts(candidate)
            if new_loss <= loss - 1e-4 * t * slope or float(np.linalg.norm(new_grad)) < gnorm:
                break
            t *= 0.5
        else:
            break  # no progress possible: rounding floor reached
        x, loss, grad = candidate, new_loss, new_grad
    gnorm = float(np.linalg.norm(grad))
    if l2 == 0.0 and separable_at(x):
        raise ConfigError(
            DatasetParams.key("l2"),
            l2,
            "the training data is linearly separable, so l2 = 0 has no minimiser; use l2 > 0",
        )
    if gnorm < NEWTON_ACCEPT:
        return x
    raise ConfigError(
        DatasetParams.key("l2"),
        l2,
        f"Newton's method did not converge (gradient norm {gnorm:.3g}); use a larger l2",
    )


# --------------------------------------------------------------------------- builders


def _stack(clients: list[Shard]) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.concatenate([c.x.numpy() for c in clients]),
        np.concatenate([c.y.numpy() for c in clients]),
    )


def _common_params(p: DatasetParams, l2_default: float) -> tuple[int, int, float, float, int]:
    dim = p.integer("dim", 20, minimum=1, maximum=MAX_DIM)
    per_client = p.integer("samples_per_client", 50, minimum=1, maximum=MAX_SAMPLES)
    heterogeneity = p.real("heterogeneity", 1.0, minimum=0.0)
    l2 = p.real("l2", l2_default, minimum=0.0)
    test_samples = p.integer("test_samples", 200, minimum=1, maximum=MAX_SAMPLES)
    return dim, per_client, heterogeneity, l2, test_samples


def is_lazy(num_clients: int, per_client: int, dim: int) -> bool:
    """Whether a convex task's training pool is large enough to be built lazily (issue 17).

    Small pools keep the eager path (a pooled ``lstsq``/Newton, one eigensolve a client), so
    every existing scenario's results stay bit-identical; large ones stream.
    """
    return num_clients * per_client * (dim + 1) > LAZY_MIN_FLOATS


def _convex_params(cfg: TaskConfig, dataset: str, l2_default: float) -> tuple[DatasetParams, tuple]:
    p = DatasetParams(dataset, cfg.dataset_params)
    common = _common_params(p, l2_default)
    dim, per_client, _, _, test_samples = common
    if is_lazy(cfg.num_clients, per_client, dim):
        # Only one client at a time, the test set and dim² statistics are ever held.
        p.check_size((per_client + test_samples) * (dim + 1) + dim * dim, f"{dataset}'s resident data")
    else:
        p.check_size((cfg.num_clients * per_client + test_samples) * (dim + 1), f"{dataset}'s data")
    return p, common


def linreg_params(cfg: TaskConfig) -> tuple[int, int, float, float, int, float]:
    """``dim, samples_per_client, heterogeneity, l2, test_samples, noise``, checked."""
    p, common = _convex_params(cfg, "linreg", 0.0)
    noise = p.real("noise", 0.1, minimum=0.0)
    p.finish()
    resolve_model_name(cfg.model, "linreg", allowed={"linear"})
    return (*common, noise)


def logreg_params(cfg: TaskConfig) -> tuple[int, int, float, float, int]:
    """``dim, samples_per_client, heterogeneity, l2, test_samples``, checked."""
    p, common = _convex_params(cfg, "logreg", 1e-3)
    p.finish()
    resolve_model_name(cfg.model, "logreg", allowed={"logreg"})
    return common


@dataclass(frozen=True)
class _LinregSpec:
    """How client i's rows are drawn: everything comes from its own ("data", i) stream."""

    seed: int
    dim: int
    per_client: int
    h: float
    noise: float
    l2: float
    x_bar: np.ndarray

    def client(self, i: int) -> tuple[np.random.Generator, np.ndarray, np.ndarray]:
        """The client's stream, positioned after its optimum x_i and feature scales s_i."""
        rng = numpy_rng(self.seed, "data", node=i)
        x_i = self.x_bar + self.h * rng.standard_normal(self.dim) / math.sqrt(self.dim)
        scale = rng.lognormal(0.0, 0.5 * self.h, self.dim)
        return rng, x_i, scale

    def draw(self, client: tuple, count: int) -> tuple[np.ndarray, np.ndarray]:
        rng, x_i, scale = client
        a = rng.standard_normal((count, self.dim)) * scale
        return a, rowdot(a, x_i) + self.noise * rng.standard_normal(count)

    def train(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.draw(self.client(i), self.per_client)

    def rows_of(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """The training rows of clients ``ids``, concatenated in that order: what :meth:`train`
        gives client by client, drawn from block-seeded streams (:mod:`client_streams`), with
        each elementwise step done once for the block (same operations in the same order, so
        the same bits) instead of once a client."""
        count, rows, dim = len(ids), self.per_client, self.dim
        z, scale = np.empty((count, dim)), np.empty((count, dim))
        # A client's rows and then its noise are consecutive normals of its stream: one draw.
        normals = np.empty((count, rows * (dim + 1)))
        for k, rng in enumerate(client_generators(self.seed, "data", ids)):
            rng.standard_normal(out=z[k])
            scale[k] = rng.lognormal(0.0, 0.5 * self.h, dim)
            rng.standard_normal(out=normals[k])
        x_i = self.x_bar + self.h * z / math.sqrt(dim)
        blocks = normals[:, : rows * dim].reshape(count, rows, dim) * scale[:, None, :]
        a, eps = blocks.reshape(count * rows, dim), normals[:, rows * dim :].ravel()
        return a, (blocks * x_i[:, None, :]).sum(axis=2).ravel() + self.noise * eps

    def constants(self, a: np.ndarray) -> tuple[float, float]:
        """(L_i, μ_i): extreme eigenvalues of AᵢᵀAᵢ/nᵢ plus l2, rounded (see round_significant)."""
        eig = np.linalg.eigvalsh(a.T @ a / self.per_client)
        l2 = self.l2
        return round_significant(float(eig[-1]) + l2), round_significant(max(float(eig[0]) + l2, l2))


def _linreg_spec(cfg: TaskConfig, seed: int) -> tuple[_LinregSpec, int]:
    dim, per_client, h, l2, test_samples, noise = linreg_params(cfg)
    warn_unused_partition(cfg)
    shared = numpy_rng(seed, "data/shared")
    x_bar = shared.standard_normal(dim) / math.sqrt(dim)
    return _LinregSpec(seed, dim, per_client, h, noise, l2, x_bar), test_samples


def build_linreg(cfg: TaskConfig, seed: int) -> Task:
    """Heterogeneous least squares (``dataset: linreg``).

    dataset_params: ``dim`` (20), ``samples_per_client`` (50), ``heterogeneity`` (1.0),
    ``noise`` (0.1), ``l2`` (0.0), ``test_samples`` (200).

    Client i has its own optimum x_i = x̄ + h·δ_i and feature scales s_i (log-normal with
    σ = h/2): rows a ~ N(0, diag(s_i²)), b = aᵀx_i + noise·ε. With h = 0 all clients share
    one distribution. The test set holds ``test_samples`` rows spread evenly over the
    clients' distributions. Large populations (see :func:`is_lazy`) are built lazily with
    the same rows: :func:`_lazy_linreg`.
    """
    spec, test_samples = _linreg_spec(cfg, seed)
    if is_lazy(cfg.num_clients, spec.per_client, spec.dim):
        return _lazy_linreg(spec, cfg.num_clients, test_samples)
    clients: list[Shard] = []
    test_x: list[np.ndarray] = []
    test_y: list[np.ndarray] = []
    smoothness: list[float] = []
    strong_convexity: list[float] = []
    for i, n_test in enumerate(split_evenly(test_samples, cfg.num_clients)):
        client = spec.client(i)
        a, b = spec.draw(client, spec.per_client)
        clients.append(Shard(to_tensor(a), to_tensor(b)))
        at, bt = spec.draw(client, n_test)
        test_x.append(at)
        test_y.append(bt)
        big, small = spec.constants(a)
        smoothness.append(big)
        strong_convexity.append(small)

    task = Task(
        name="linreg",
        clients=clients,
        test=Shard(to_tensor(np.concatenate(test_x)), to_tensor(np.concatenate(test_y))),
        objective=LeastSquaresObjective(spec.dim, spec.l2),
        classification=False,
        smoothness=smoothness,
        strong_convexity=strong_convexity,
    )
    a_all, b_all = _stack(clients)
    task.optimum = to_tensor(least_squares_optimum(a_all, b_all, spec.l2))
    task.optimum_value = task.global_loss(task.optimum)
    return task


def _test_counts(test_samples: int, num_clients: int, i: int) -> int:
    """Client i's share of the test set, as :func:`split_evenly` gives it, without the O(N) list."""
    base, extra = divmod(test_samples, num_clients)
    return base + (1 if i < extra else 0)


def _client_chunks(num_clients: int, rows_of: Callable[[range], tuple]) -> Iterator[tuple]:
    """Every client's arrays, concatenated STREAM_CHUNK clients at a time (bounded memory)."""
    for start in range(0, num_clients, STREAM_CHUNK):
        yield rows_of(range(start, min(start + STREAM_CHUNK, num_clients)))


def _lazy_convex_task(
    spec: _LinregSpec | _LogregSpec,
    num_clients: int,
    test_samples: int,
    name: str,
    objective: _RegularisedLinearObjective,
) -> Task:
    """The parts both lazy convex tasks share: the test set (drawn only from the clients that
    hold test rows), a :class:`LazyClients` population, and L_i, μ_i on first read."""
    test_x: list[np.ndarray] = []
    test_y: list[np.ndarray] = []
    for i in range(min(num_clients, test_samples)):
        client = spec.client(i)
        spec.draw(client, spec.per_client)
        at, bt = spec.draw(client, _test_counts(test_samples, num_clients, i))
        test_x.append(at)
        test_y.append(bt)
    memo: dict[int, tuple[float, float]] = {}

    def constants(i: int) -> tuple[float, float]:
        if i not in memo:
            memo[i] = spec.constants(spec.train(i)[0])
        return memo[i]

    per_client = spec.per_client

    def shards(ids: Sequence[int]) -> list[Shard]:
        """A round's first-time clients in one block pass; each shard owns a copy of its rows
        (not a view of the block, which would outlive the cache's accounting)."""
        a, b = spec.rows_of(ids)
        return [
            Shard(
                to_tensor(a[k * per_client : (k + 1) * per_client].copy()),
                to_tensor(b[k * per_client : (k + 1) * per_client].copy()),
            )
            for k in range(len(ids))
        ]

    return Task(
        name=name,
        clients=LazyClients(
            num_clients,
            lambda i: Shard(*(to_tensor(v) for v in spec.train(i))),
            lambda: [per_client] * num_clients,
            build_many=shards,
        ),
        test=Shard(to_tensor(np.concatenate(test_x)), to_tensor(np.concatenate(test_y))),
        objective=objective,
        classification=name == "logreg",
        num_classes=2 if name == "logreg" else None,
        smoothness=LazyConstants(num_clients, lambda i: constants(i)[0]),
        strong_convexity=LazyConstants(num_clients, lambda i: constants(i)[1]),
    )


def _lazy_linreg(spec: _LinregSpec, num_clients: int, test_samples: int) -> Task:
    """``linreg`` for a large population: the same rows as the eager build, drawn on demand.

    The optimum comes from one streamed pass
    (:func:`flsim.tasks.streamed.streamed_least_squares`), deferred to the first evaluation
    (``Task.pending_optimum``) so that hosts which only run clients never pay it, and the train
    loss is the exact quadratic form around x*, O(d²) per evaluation.
    """

    def solve() -> tuple[Tensor, float, Callable[[Tensor], float]]:
        stats = LeastSquaresStats(spec.dim).add_chunks(_client_chunks(num_clients, spec.rows_of))
        optimum, hessian, value = streamed_least_squares(stats, spec.l2)
        x_star = to_tensor(optimum)
        return x_star, value, quadratic_loss_oracle(x_star, hessian, value)

    task = _lazy_convex_task(
        spec, num_clients, test_samples, "linreg", LeastSquaresObjective(spec.dim, spec.l2)
    )
    task.pending_optimum = solve
    return task


@dataclass(frozen=True)
class _LogregSpec:
    """How client i's rows are drawn from its own ("data", i) stream (see build_logreg)."""

    seed: int
    dim: int
    per_client: int
    h: float
    l2: float
    w_bar: np.ndarray

    def client(self, i: int) -> tuple[np.random.Generator, np.ndarray, np.ndarray]:
        rng = numpy_rng(self.seed, "data", node=i)
        w_i = self.w_bar + self.h * rng.standard_normal(self.dim) / math.sqrt(self.dim)
        shift = 0.5 * self.h * rng.standard_normal(self.dim)
        return rng, w_i, shift

    def draw(self, client: tuple, count: int) -> tuple[np.ndarray, np.ndarray]:
        rng, w_i, shift = client
        a = rng.standard_normal((count, self.dim)) + shift
        y = (rowdot(a, w_i) + rng.logistic(size=count) > 0).astype(np.float64)
        return a, y

    def train(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.draw(self.client(i), self.per_client)

    def rows_of(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Clients ``ids``' training rows, concatenated in that order, drawn block-wise with the
        bits of :meth:`train` (see :meth:`_LinregSpec.rows_of`)."""
        count, rows = len(ids), self.per_client
        z, shift = np.empty((count, self.dim)), np.empty((count, self.dim))
        a, noise = np.empty((count * rows, self.dim)), np.empty(count * rows)
        for k, rng in enumerate(client_generators(self.seed, "data", ids)):
            rng.standard_normal(out=z[k])
            rng.standard_normal(out=shift[k])
            rng.standard_normal(out=a[k * rows : (k + 1) * rows])
            noise[k * rows : (k + 1) * rows] = rng.logistic(size=rows)
        w_i = self.w_bar + self.h * z / math.sqrt(self.dim)
        blocks = a.reshape(count, rows, self.dim)  # a view: client k's rows are blocks[k]
        blocks += (0.5 * self.h * shift)[:, None, :]
        return a, ((blocks * w_i[:, None, :]).sum(axis=2).ravel() + noise > 0).astype(np.float64)

    def constants(self, a: np.ndarray) -> tuple[float, float]:
        """(L_i, μ_i) = (λ_max(AᵢᵀAᵢ)/(4nᵢ) + l2, l2), rounded like the eager build."""
        top = float(np.linalg.eigvalsh(a.T @ a)[-1])
        return round_significant(top / (4.0 * self.per_client) + self.l2), self.l2


def build_logreg(cfg: TaskConfig, seed: int) -> Task:
    """Heterogeneous binary logistic regression (``dataset: logreg``).

    dataset_params: ``dim`` (20), ``samples_per_client`` (50), ``heterogeneity`` (1.0),
    ``l2`` (1e-3), ``test_samples`` (200).

    Client i has true weights w_i = w̄ + h·δ_i/√d and features a ~ N(h·m_i/2, I) with a
    per-client mean shift m_i; labels are y = 1[aᵀw_i + ℓ > 0] with logistic noise ℓ, i.e.
    P(y = 1 | a) = σ(aᵀw_i). (Drawing ℓ instead of comparing a uniform with σ avoids a
    vectorised ``exp``, whose last bit can differ between CPUs.) ‖w̄‖ ≈ 2 so classes
    overlap and the optimum is finite even for small l2. Large populations are built
    lazily with the same rows: :func:`_lazy_logreg`.
    """
    dim, per_client, h, l2, test_samples = logreg_params(cfg)
    warn_unused_partition(cfg)
    shared = numpy_rng(seed, "data/shared")
    spec = _LogregSpec(seed, dim, per_client, h, l2, 2.0 * shared.standard_normal(dim) / math.sqrt(dim))
    if is_lazy(cfg.num_clients, per_client, dim):
        return _lazy_logreg(spec, cfg.num_clients, test_samples)
    clients: list[Shard] = []
    test_x: list[np.ndarray] = []
    test_y: list[np.ndarray] = []
    smoothness: list[float] = []
    for i, n_test in enumerate(split_evenly(test_samples, cfg.num_clients)):
        client = spec.client(i)
        a, y = spec.draw(client, per_client)
        clients.append(Shard(to_tensor(a), to_tensor(y)))
        at, yt = spec.draw(client, n_test)
        test_x.append(at)
        test_y.append(yt)
        smoothness.append(spec.constants(a)[0])

    task = Task(
        name="logreg",
        clients=clients,
        test=Shard(to_tensor(np.concatenate(test_x)), to_tensor(np.concatenate(test_y))),
        objective=LogisticObjective(dim, l2),
        classification=True,
        num_classes=2,
        smoothness=smoothness,
        strong_convexity=[l2] * cfg.num_clients,
    )
    a_all, y_all = _stack(clients)
    task.optimum = to_tensor(logistic_optimum(a_all, y_all, l2))
    task.optimum_value = task.global_loss(task.optimum)
    return task


def _streamed_logistic(spec: _LogregSpec, num_clients: int) -> tuple[Callable, Callable, Callable]:
    """(loss and gradient, Hessian, separability) of the global logistic objective, each one
    streamed pass over the population's chunks (regenerated, never held), with the products
    through torch (see :func:`flsim.tasks.streamed.matmul`)."""
    n = num_clients * spec.per_client
    l2 = spec.l2

    def logits_of(a: np.ndarray, x: np.ndarray) -> np.ndarray:
        return matmul(torch.from_numpy(a), torch.from_numpy(x))

    def parts(x: np.ndarray) -> tuple[float, np.ndarray]:
        total, grad = 0.0, np.zeros(spec.dim)
        for a, y in _client_chunks(num_clients, spec.rows_of):
            logits = logits_of(a, x)
            total += float(np.logaddexp(0.0, -(2.0 * y - 1.0) * logits).sum())
            grad += logits_of(np.ascontiguousarray(a.T), 0.5 * (1.0 + np.tanh(0.5 * logits)) - y)
        return total / n + 0.5 * l2 * float(x @ x), grad / n + l2 * x

    def hessian_at(x: np.ndarray) -> np.ndarray:
        total = np.zeros((spec.dim, spec.dim))
        for a, _ in _client_chunks(num_clients, spec.rows_of):
            prob = 0.5 * (1.0 + np.tanh(0.5 * logits_of(a, x)))
            ta = torch.from_numpy(a)
            total += matmul(ta.T * torch.from_numpy(prob * (1.0 - prob)), ta)
        return total / n + l2 * np.eye(spec.dim)

    def separable_at(x: np.ndarray) -> bool:
        chunks = _client_chunks(num_clients, spec.rows_of)
        return all(bool(np.all((2.0 * y - 1.0) * logits_of(a, x) > 0)) for a, y in chunks)

    return parts, hessian_at, separable_at


def _lazy_logreg(spec: _LogregSpec, num_clients: int, test_samples: int) -> Task:
    """``logreg`` for a large population: Newton's method streams its gradient and Hessian
    over chunks of clients, and so does the train loss (one pass per evaluation: a logistic
    loss has no finite sufficient statistics, so prefer ``eval.train_loss: false`` or a
    sparse ``eval.every`` at 10⁶ clients)."""
    parts, hessian_at, separable_at = _streamed_logistic(spec, num_clients)

    def solve() -> tuple[Tensor, float, Callable[[Tensor], float]]:
        optimum = _newton(parts, hessian_at, separable_at, spec.dim, spec.l2)
        return to_tensor(optimum), parts(optimum)[0], lambda params: parts(params.numpy())[0]

    task = _lazy_convex_task(spec, num_clients, test_samples, "logreg", LogisticObjective(spec.dim, spec.l2))
    task.pending_optimum = solve
    return task
