"""Lazy synthetic_leaf and pooled populations (issue 17): the eager samples, built on first use."""

from __future__ import annotations

import json

import pytest
import torch

import flsim
import flsim.tasks.leaf as leaf
from flsim.config.schema import TaskConfig
from flsim.tasks import build_task
from flsim.tasks.lazy_clients import LazyClients


def _leaf(num_clients: int = 30, **params) -> TaskConfig:
    return TaskConfig(
        dataset="synthetic_leaf",
        num_clients=num_clients,
        dataset_params={"dim": 7, "classes": 4, "min_samples": 5, "lognormal_mean": 1.0, **params},
        test_fraction=0.2,
    )


@pytest.mark.parametrize("params", [{}, {"iid": True}, {"max_samples_per_client": 9}])
def test_lazy_leaf_has_the_eager_samples(params, monkeypatch):
    eager = build_task(_leaf(**params), 3)
    assert isinstance(eager.clients, list)
    monkeypatch.setattr(leaf, "LAZY_MIN_FLOATS", 0)
    lazy = build_task(_leaf(**params), 3)
    assert isinstance(lazy.clients, LazyClients)
    assert lazy.client_sizes() == eager.client_sizes() == [len(c) for c in eager.clients]
    for k in (29, 0, 13):
        assert torch.equal(lazy.clients[k].x, eager.clients[k].x)
        assert torch.equal(lazy.clients[k].y, eager.clients[k].y)
    assert torch.equal(lazy.test.x, eager.test.x) and torch.equal(lazy.test.y, eager.test.y)
    assert lazy.clients.builds == 3  # sizes came from the block pass, not from building clients


def test_leaf_test_set_is_the_held_out_part_of_the_first_test_clients():
    whole = build_task(_leaf(), 3)
    first = build_task(_leaf(test_clients=4), 3)
    assert [len(c) for c in first.clients] == [len(c) for c in whole.clients]  # training unchanged
    assert 0 < len(first.test) < len(whole.test)
    # the whole test set holds every client's held-out samples in id order; the first four lead
    assert torch.equal(first.test.x, whole.test.x[: len(first.test)])
    assert torch.equal(first.test.y, whole.test.y[: len(first.test)])


def test_a_million_client_leaf_population_builds_in_o_of_test_clients(monkeypatch):
    """Nothing but the test clients is drawn at build time; sizes wait for the first weighting."""
    task = build_task(_leaf(num_clients=1_000_000, test_clients=3), 1)
    assert isinstance(task.clients, LazyClients) and task.clients.builds == 0
    x = task.clients[999_999].x
    assert x.shape[1] == 7 and task.clients.builds == 1


def _run(tmp_path, name: str, raw: dict) -> list[dict]:
    flsim.run(raw, run_dir=tmp_path / name)
    rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "wall_time"} for row in rows]


def _leaf_run(backend: dict) -> dict:
    return {
        "name": "lazy_leaf",
        "seed": 2,
        "task": {
            "dataset": "synthetic_leaf",
            "num_clients": 40,
            "dataset_params": {"dim": 6, "classes": 3, "min_samples": 6, "lognormal_mean": 1.0},
        },
        "algorithm": {"name": "fedavg", "lr": 0.1, "local_steps": 3, "batch_size": 4},
        "rounds": 4,
        "clients_per_round": 8,
        "backend": backend,
        "eval": {"every": 2},
    }


@pytest.mark.slow
def test_leaf_results_do_not_depend_on_laziness_or_the_cache_size(tmp_path, monkeypatch):
    eager = _run(tmp_path, "eager", _leaf_run({}))
    monkeypatch.setattr(leaf, "LAZY_MIN_FLOATS", 0)
    one = _run(tmp_path, "one", _leaf_run({"client_cache_clients": 1}))
    everyone = _run(tmp_path, "all", _leaf_run({"client_cache_clients": 40}))
    assert eager == one == everyone
    assert len(eager) == 3 and eager[-1]["test_acc"] > 0


def test_pooled_clients_are_index_slices_gathered_on_demand():
    """Client k is x[ids of part k]: the partition's own index arrays, built only when used."""
    from flsim.rng import numpy_rng
    from flsim.tasks.partition import partition
    from flsim.tasks.pooled import _assemble, digits_params, load_digits_data, stratified_split

    cfg = TaskConfig(dataset="digits", num_clients=50, partition={"kind": "dirichlet", "alpha": 0.3})
    data = load_digits_data()
    task = _assemble(cfg, 6, data, digits_params(cfg))
    assert isinstance(task.clients, LazyClients) and task.clients.builds == 0
    train, _ = stratified_split(data.y, cfg.test_fraction, numpy_rng(6, "split"))
    parts = partition(data.y[train], 50, cfg.partition, numpy_rng(6, "partition"))
    assert task.client_sizes() == [len(p) for p in parts] and task.clients.builds == 0
    for k in (49, 0, 17):
        assert torch.equal(task.clients[k].x, torch.from_numpy(data.x[train][parts[k]]))
        assert torch.equal(task.clients[k].y, torch.from_numpy(data.y[train][parts[k]]))


def _digits_run(backend: dict) -> dict:
    return {
        "name": "lazy_digits",
        "seed": 3,
        "task": {"dataset": "digits", "num_clients": 60, "partition": {"kind": "dirichlet", "alpha": 0.5}},
        "algorithm": {"name": "fedavg", "lr": 0.1, "local_steps": 2, "batch_size": 8},
        "rounds": 3,
        "clients_per_round": 10,
        "backend": backend,
        "eval": {"every": 3},
    }


@pytest.mark.slow
def test_pooled_results_do_not_depend_on_the_cache_size(tmp_path):
    one = _run(tmp_path, "one", _digits_run({"client_cache_clients": 1}))
    everyone = _run(tmp_path, "all", _digits_run({"client_cache_clients": 60}))
    assert one == everyone and len(one) == 2 and one[-1]["test_acc"] > 0


def test_system_memo_is_bounded_and_eviction_changes_no_value(monkeypatch):
    import flsim.engine.system as system
    from flsim.config.schema import SystemConfig

    config = SystemConfig(compute={"sigma": 0.5, "slow_fraction": 0.3}, link={"sigma": 0.4})
    unbounded = system.SystemModel(config, 5, 1000)
    reference = [(unbounded.speed(c), unbounded.bandwidth(c)) for c in range(1000)]
    monkeypatch.setattr(system, "MEMO_CLIENTS", 10)
    bounded = system.SystemModel(config, 5, 1000)
    for c in [*range(1000), *range(999, -1, -7)]:
        assert (bounded.speed(c), bounded.bandwidth(c)) == reference[c]
        assert len(bounded._speeds) <= 10 and len(bounded._bandwidths) <= 10


def _dirichlet_reference(labels, num_clients, alpha, rng):
    """The loop the vectorised partitioner replaced: N × classes list appends a draw."""
    import numpy as np

    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    while True:
        chunks = [[] for _ in range(num_clients)]
        for members in by_class:
            shuffled = rng.permutation(members)
            proportions = rng.dirichlet(np.full(num_clients, alpha))
            cuts = np.minimum((np.cumsum(proportions)[:-1] * len(shuffled)).astype(np.int64), len(shuffled))
            for client, part in enumerate(np.split(shuffled, cuts)):
                chunks[client].append(part)
        parts = [np.sort(np.concatenate(c)) for c in chunks]
        if min(len(p) for p in parts) >= 1:
            return parts


@pytest.mark.parametrize(
    ("n", "classes", "clients", "alpha"), [(500, 10, 10, 0.5), (3000, 4, 300, 2.0), (90, 3, 7, 0.2)]
)
def test_vectorised_dirichlet_partition_is_the_reference_loop(n, classes, clients, alpha):
    import numpy as np

    from flsim.config.schema import PartitionConfig
    from flsim.tasks.partition import dirichlet

    labels = np.random.default_rng(n).integers(0, classes, n)
    cfg = PartitionConfig(kind="dirichlet", alpha=alpha, min_size=1)
    parts = dirichlet(labels, clients, cfg, np.random.default_rng(5))
    reference = _dirichlet_reference(labels, clients, alpha, np.random.default_rng(5))
    assert len(parts) == clients and all(np.array_equal(p, q) for p, q in zip(parts, reference, strict=True))
