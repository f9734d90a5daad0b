"""build_task: determinism, registries, natural models and ConfigError keys."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from flsim.config.errors import ConfigError
from flsim.config.schema import TaskConfig
from flsim.tasks import DATASETS, MODELS, LeastSquaresObjective, LogisticObjective, build_task
from flsim.tasks.base import ModuleObjective, Task

CONFIGS: dict[str, dict[str, Any]] = {
    "linreg": {"dataset": "linreg", "num_clients": 5},
    "logreg": {"dataset": "logreg", "num_clients": 5},
    "synthetic_leaf": {"dataset": "synthetic_leaf", "num_clients": 5, "dataset_params": {"dim": 10}},
    "digits-dirichlet": {
        "dataset": "digits",
        "num_clients": 6,
        "partition": {"kind": "dirichlet", "alpha": 0.3},
        "model": {"name": "cnn"},
    },
    "digits-shards": {"dataset": "digits", "num_clients": 6, "partition": {"kind": "shards"}},
    "digits-quantity": {
        "dataset": "digits",
        "num_clients": 6,
        "partition": {"kind": "quantity_skew", "alpha": 1.0},
    },
}


def _tensors(task: Task) -> list[torch.Tensor]:
    out = [t for shard in [*task.clients, task.test] for t in (shard.x, shard.y)]
    out.append(task.objective.init_params(torch.Generator().manual_seed(9)))
    if task.optimum is not None:
        out.append(task.optimum)
    return out


def _identical(a: Task, b: Task) -> bool:
    ta, tb = _tensors(a), _tensors(b)
    return len(ta) == len(tb) and all(
        x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y) for x, y in zip(ta, tb, strict=True)
    )


@pytest.mark.parametrize("name", list(CONFIGS))
def test_build_is_deterministic_and_seed_dependent(name: str) -> None:
    cfg = TaskConfig(**CONFIGS[name])
    first, again, other = build_task(cfg, 3), build_task(cfg, 3), build_task(cfg, 4)
    assert _identical(first, again)
    assert first.optimum_value == again.optimum_value
    assert first.smoothness == again.smoothness
    assert not _identical(first, other)
    assert first.num_clients == cfg.num_clients
    # Fresh modules every build: the flat-buffer rebinding must never be shared.
    if isinstance(first.objective, ModuleObjective):
        assert first.objective.module is not again.objective.module


def test_separate_builds_do_not_share_parameter_buffers() -> None:
    cfg = TaskConfig(dataset="digits", num_clients=2, model={"name": "mlp", "hidden": [8]})
    a, b = build_task(cfg, 0), build_task(cfg, 0)
    shard = a.clients[0]
    pa = a.objective.init_params(torch.Generator().manual_seed(1))
    pb = torch.zeros_like(pa)
    before = a.objective.loss(pa, shard.x, shard.y)
    b.objective.loss_and_grad(pb, shard.x, shard.y)
    assert a.objective.loss(pa, shard.x, shard.y) == before


def test_registries_cover_the_schema_names() -> None:
    assert set(DATASETS) == {"digits", "linreg", "logreg", "synthetic_leaf", "mnist_idx", "cifar10"}
    assert set(MODELS) == {"linear", "logreg", "mlp", "cnn"}


def test_natural_models() -> None:
    assert isinstance(build_task(TaskConfig(dataset="linreg"), 0).objective, LeastSquaresObjective)
    assert isinstance(build_task(TaskConfig(dataset="logreg"), 0).objective, LogisticObjective)
    digits = build_task(TaskConfig(dataset="digits", model={"hidden": [32]}), 0)
    assert isinstance(digits.objective, ModuleObjective)
    assert digits.dim == (64 * 32 + 32) + (32 * 10 + 10)  # the mlp
    assert digits.dtype == torch.float32
    assert digits.num_classes == 10 and digits.classification


def test_digits_split_and_types() -> None:
    task = build_task(TaskConfig(dataset="digits", num_clients=4, test_fraction=0.25), 0)
    assert sum(task.client_sizes()) + len(task.test) == 1797
    assert len(task.test) == round(0.25 * 1797)
    pool = task.train_pool()
    assert pool.x.dtype == torch.float32 and pool.y.dtype == torch.int64
    assert float(pool.x.min()) == 0.0 and float(pool.x.max()) == 1.0
    # Stratified: each class's test share is within one sample of 25 %.
    for c in range(10):
        n_test = int((task.test.y == c).sum())
        n_all = n_test + int((pool.y == c).sum())
        assert abs(n_test - 0.25 * n_all) <= 1


def test_digits_max_samples() -> None:
    task = build_task(TaskConfig(dataset="digits", num_clients=4, dataset_params={"max_samples": 100}), 0)
    assert sum(task.client_sizes()) == 100


@pytest.mark.parametrize(
    ("dataset", "params", "key"),
    [
        ("linreg", {"dimm": 3}, "task.dataset_params.dimm"),
        ("linreg", {"dim": "20"}, "task.dataset_params.dim"),
        ("linreg", {"dim": True}, "task.dataset_params.dim"),
        ("linreg", {"dim": 0}, "task.dataset_params.dim"),
        ("linreg", {"noise": -0.1}, "task.dataset_params.noise"),
        ("linreg", {"l2": float("nan")}, "task.dataset_params.l2"),
        ("logreg", {"noise": 0.1}, "task.dataset_params.noise"),
        ("logreg", {"heterogeneity": "high"}, "task.dataset_params.heterogeneity"),
        ("synthetic_leaf", {"iid": "yes"}, "task.dataset_params.iid"),
        ("synthetic_leaf", {"classes": 1}, "task.dataset_params.classes"),
        ("digits", {"path": "/tmp"}, "task.dataset_params.path"),
        ("digits", {"max_samples": 0}, "task.dataset_params.max_samples"),
        ("mnist_idx", {}, "task.dataset_params.path"),
        ("cifar10", {"path": "/definitely/not/here"}, "task.dataset_params.path"),
    ],
)
def test_bad_dataset_params_name_the_key(dataset: str, params: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_task(TaskConfig(dataset=dataset, dataset_params=params), 0)
    assert info.value.key == key


@pytest.mark.parametrize(
    ("dataset", "model"),
    [
        ("linreg", "mlp"),
        ("linreg", "logreg"),
        ("logreg", "linear"),
        ("synthetic_leaf", "cnn"),
        ("logreg", "cnn"),
    ],
)
def test_incompatible_model_is_a_config_error(dataset: str, model: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_task(TaskConfig(dataset=dataset, model={"name": model}), 0)
    assert info.value.key == "task.model.name"
    assert info.value.value == model


def test_too_many_clients_for_digits() -> None:
    with pytest.raises(ConfigError) as info:
        build_task(TaskConfig(dataset="digits", num_clients=1000), 0)
    assert info.value.key == "task.num_clients"


_DIGEST_SCRIPT = """
import hashlib, sys
import torch
from flsim.config.schema import TaskConfig
from flsim.tasks import build_task
digest = hashlib.sha256()
for name in ("linreg", "logreg", "synthetic_leaf", "digits"):
    task = build_task(TaskConfig(dataset=name, num_clients=5, partition={"kind": "dirichlet"}), 7)
    for shard in [*task.clients, task.test]:
        digest.update(shard.x.numpy().tobytes())
        digest.update(shard.y.numpy().tobytes())
    if task.optimum is not None:
        digest.update(task.optimum.numpy().tobytes())
    digest.update(task.objective.init_params(torch.Generator().manual_seed(1)).numpy().tobytes())
sys.stdout.write(digest.hexdigest())
"""


@pytest.mark.slow
def test_build_is_identical_across_processes() -> None:
    """What Ray actors rely on: fresh interpreters (other hash seeds) build the same bits."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", _DIGEST_SCRIPT],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        digests.add(out.stdout)
    assert len(digests) == 1
