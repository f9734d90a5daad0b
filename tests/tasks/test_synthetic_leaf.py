"""LEAF / FedProx Synthetic(α, β)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from flsim.config.schema import TaskConfig
from flsim.tasks import build_task
from flsim.tasks.base import ModuleObjective, Task


def _leaf(num_clients: int = 12, **params: Any) -> Task:
    cfg = TaskConfig(
        dataset="synthetic_leaf", num_clients=num_clients, dataset_params=params, test_fraction=0.1
    )
    return build_task(cfg, seed=4)


def test_shapes_dtypes_and_sizes() -> None:
    task = _leaf(dim=20, classes=5, min_samples=30)
    assert task.num_clients == 12 and task.classification and task.num_classes == 5
    for shard in [*task.clients, task.test]:
        assert shard.x.dtype == torch.float32 and shard.y.dtype == torch.int64
        assert shard.x.shape[1] == 20
        assert int(shard.y.min()) >= 0 and int(shard.y.max()) < 5
    # n_k >= 30 and 10% held out: every client keeps at least 27 training samples.
    assert min(task.client_sizes()) >= 27
    # Power-law sizes: clearly unequal.
    assert max(task.client_sizes()) > 3 * min(task.client_sizes())
    assert task.optimum is None


def test_natural_model_is_multinomial_logistic_regression() -> None:
    task = _leaf(dim=20, classes=5)
    assert isinstance(task.objective, ModuleObjective)
    assert task.dim == 20 * 5 + 5


def test_cap_bounds_client_sizes() -> None:
    task = _leaf(max_samples_per_client=60, min_samples=50)
    sizes = [len(c) for c in task.clients]
    assert max(sizes) <= 60


def _client_feature_means(task: Task) -> np.ndarray:
    return np.stack([c.x.double().mean(dim=0).numpy() for c in task.clients])


def test_iid_clients_share_a_distribution_and_non_iid_do_not() -> None:
    iid = _leaf(iid=True, min_samples=200, lognormal_sigma=0.0)
    skewed = _leaf(alpha=1.0, beta=1.0, min_samples=200, lognormal_sigma=0.0)
    spread_iid = float(_client_feature_means(iid).std(axis=0).mean())
    spread_skewed = float(_client_feature_means(skewed).std(axis=0).mean())
    assert spread_iid < 0.1
    assert spread_skewed > 0.5


def test_beta_controls_feature_heterogeneity() -> None:
    low = _leaf(alpha=0.0, beta=0.0, min_samples=200, lognormal_sigma=0.0)
    high = _leaf(alpha=0.0, beta=3.0, min_samples=200, lognormal_sigma=0.0)
    # Client feature means are v_k ~ N(B_k, 1) with B_k ~ N(0, β²): the per-client average of
    # v_k over coordinates has spread ≈ β.
    assert np.std(_client_feature_means(low).mean(axis=1)) < 0.5
    assert np.std(_client_feature_means(high).mean(axis=1)) > 1.5
