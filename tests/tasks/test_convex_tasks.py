"""linreg / logreg: exact optima, closed-form gradients vs autograd, curvature constants."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from flsim.config.errors import ConfigError
from flsim.config.schema import TaskConfig
from flsim.tasks import LeastSquaresObjective, LogisticObjective, build_task
from flsim.tasks.base import Task


def _task(dataset: str, num_clients: int = 6, **params: Any) -> Task:
    return build_task(TaskConfig(dataset=dataset, num_clients=num_clients, dataset_params=params), seed=11)


def _linreg_client_grad(a: np.ndarray, b: np.ndarray, x: np.ndarray, l2: float) -> np.ndarray:
    return a.T @ (a @ x - b) / len(b) + l2 * x


def _logreg_client_grad(a: np.ndarray, y: np.ndarray, x: np.ndarray, l2: float) -> np.ndarray:
    prob = 1.0 / (1.0 + np.exp(-(a @ x)))
    return a.T @ (prob - y) / len(y) + l2 * x


def _global_grad(task: Task, client_grad: Any, x: np.ndarray, l2: float) -> np.ndarray:
    """(1/N) Σ_i ∇f_i(x), from each client's own data (all clients hold n_i = n/N samples)."""
    grads = [client_grad(c.x.numpy(), c.y.numpy(), x, l2) for c in task.clients]
    return np.mean(grads, axis=0)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"l2": 0.1, "heterogeneity": 3.0},
        {"heterogeneity": 0.0, "noise": 0.0},
        {"dim": 40, "samples_per_client": 5},
    ],
)
def test_linreg_optimum_has_zero_gradient(params: dict[str, Any]) -> None:
    task = _task("linreg", **params)
    l2 = float(params.get("l2", 0.0))
    assert task.optimum is not None and task.optimum.dtype == torch.float64
    sizes = task.client_sizes()
    assert len(set(sizes)) == 1
    grad = _global_grad(task, _linreg_client_grad, task.optimum.numpy(), l2)
    assert np.linalg.norm(grad) < 1e-10
    assert task.optimum_value == pytest.approx(task.global_loss(task.optimum), abs=0)
    metrics = task.evaluate(task.optimum)
    assert metrics["optimality_gap"] == 0.0 and metrics["dist_to_opt"] == 0.0


@pytest.mark.parametrize("params", [{}, {"l2": 1e-2, "heterogeneity": 3.0}, {"heterogeneity": 0.0, "dim": 5}])
def test_logreg_optimum_has_zero_gradient(params: dict[str, Any]) -> None:
    task = _task("logreg", **params)
    l2 = float(params.get("l2", 1e-3))
    assert task.optimum is not None
    grad = _global_grad(task, _logreg_client_grad, task.optimum.numpy(), l2)
    assert np.linalg.norm(grad) < 1e-10
    # A minimum, not just a stationary point: nearby points are worse.
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        nudge = 1e-3 * torch.randn(task.dim, generator=gen, dtype=torch.float64)
        assert task.global_loss(task.optimum + nudge) > task.optimum_value


def test_logreg_without_l2_on_separable_data_is_a_config_error() -> None:
    # 20 samples in 40 dimensions are always linearly separable: no finite minimiser.
    with pytest.raises(ConfigError) as info:
        _task("logreg", num_clients=4, l2=0.0, dim=40, samples_per_client=5)
    assert info.value.key == "task.dataset_params.l2"
    task = _task("logreg", num_clients=4, l2=0.0, samples_per_client=200)  # overlapping classes: fine
    grad = _global_grad(task, _logreg_client_grad, task.optimum.numpy(), 0.0)
    assert np.linalg.norm(grad) < 1e-10


def test_logreg_optimum_classifies_well_and_labels_are_binary() -> None:
    task = _task("logreg", num_clients=4, samples_per_client=200)
    pool = task.train_pool()
    assert set(torch.unique(pool.y).tolist()) == {0.0, 1.0}
    assert task.num_classes == 2 and task.classification
    metrics = task.evaluate(task.optimum)
    assert metrics["test_acc"] > 0.7
    zero = task.evaluate(torch.zeros(task.dim, dtype=torch.float64))
    assert zero["optimality_gap"] > 0.05


def _random_batch(objective: Any, n: int, binary: bool, seed: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, objective.dim, generator=gen, dtype=torch.float64)
    if binary:
        y = (torch.rand(n, generator=gen, dtype=torch.float64) > 0.5).to(torch.float64)
    else:
        y = torch.randn(n, generator=gen, dtype=torch.float64)
    params = 3.0 * torch.randn(objective.dim, generator=gen, dtype=torch.float64)
    return params, x, y


@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_least_squares_gradient_matches_autograd(l2: float) -> None:
    objective = LeastSquaresObjective(dim=7, l2=l2)
    params, x, y = _random_batch(objective, 13, binary=False, seed=1)
    leaf = params.clone().requires_grad_(True)
    reference = 0.5 * ((x @ leaf - y) ** 2).mean() + 0.5 * l2 * (leaf**2).sum()
    reference.backward()
    loss, grad = objective.loss_and_grad(params, x, y)
    assert loss == pytest.approx(float(reference.detach()), rel=1e-14)
    assert objective.loss(params, x, y) == loss
    torch.testing.assert_close(grad, leaf.grad, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(objective.predict(params, x), x @ params)


@pytest.mark.parametrize("l2", [0.0, 1e-3])
def test_logistic_gradient_matches_autograd(l2: float) -> None:
    objective = LogisticObjective(dim=6, l2=l2)
    params, x, y = _random_batch(objective, 17, binary=True, seed=2)
    leaf = params.clone().requires_grad_(True)
    signs = 2.0 * y - 1.0
    reference = torch.log1p(torch.exp(-signs * (x @ leaf))).mean() + 0.5 * l2 * (leaf**2).sum()
    reference.backward()
    loss, grad = objective.loss_and_grad(params, x, y)
    assert loss == pytest.approx(float(reference.detach()), rel=1e-12)
    assert objective.loss(params, x, y) == loss
    torch.testing.assert_close(grad, leaf.grad, rtol=1e-12, atol=1e-13)


def test_logistic_loss_is_accurate_at_large_margins() -> None:
    """softplus(-m) ~ exp(-m) for large m; a linear cut-off approximation would give 0."""
    objective = LogisticObjective(dim=1, l2=0.0)
    x = torch.tensor([[30.0]], dtype=torch.float64)
    loss = objective.loss(torch.ones(1, dtype=torch.float64), x, torch.ones(1, dtype=torch.float64))
    assert loss == pytest.approx(np.exp(-30.0), rel=1e-12)


@pytest.mark.parametrize("dataset", ["linreg", "logreg"])
def test_curvature_constants_bound_the_client_gradients(dataset: str) -> None:
    """L_i and μ_i hold on random pairs: μ‖d‖² ≤ <∇f_i(u)−∇f_i(v), d> and ‖∇f_i(u)−∇f_i(v)‖ ≤ L‖d‖."""
    task = _task(dataset, num_clients=4, l2=0.05)
    assert task.smoothness is not None and task.strong_convexity is not None
    gen = torch.Generator().manual_seed(3)
    tight = 0.0
    for i, shard in enumerate(task.clients):
        big_l, mu = task.smoothness[i], task.strong_convexity[i]
        assert 0.05 <= mu <= big_l
        for _ in range(20):
            u = torch.randn(task.dim, generator=gen, dtype=torch.float64)
            v = torch.randn(task.dim, generator=gen, dtype=torch.float64)
            diff = (
                task.objective.loss_and_grad(u, shard.x, shard.y)[1]
                - task.objective.loss_and_grad(v, shard.x, shard.y)[1]
            )
            d = u - v
            assert float(diff @ d) >= mu * float(d @ d) * (1 - 1e-9)
            ratio = float(diff.norm() / d.norm())
            assert ratio <= big_l * (1 + 1e-9)
            tight = max(tight, ratio / big_l)
    if dataset == "linreg":
        assert tight > 0.3  # not a wildly loose bound


def test_heterogeneity_spreads_the_client_optima() -> None:
    def spread(h: float) -> float:
        task = _task("linreg", heterogeneity=h, noise=0.0, samples_per_client=100, dim=5)
        optima = [np.linalg.lstsq(c.x.numpy(), c.y.numpy(), rcond=None)[0] for c in task.clients]
        return float(np.std(optima, axis=0).sum())

    assert spread(0.0) < 1e-12
    assert spread(2.0) > 0.5
