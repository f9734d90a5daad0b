"""Lazy populations (issue 17): same rows as the eager build, a bounded cache, a streamed optimum."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
import yaml

import flsim
import flsim.tasks.convex as convex
from flsim.cli import main
from flsim.config.schema import TaskConfig
from flsim.engine.sampling import sample_clients
from flsim.tasks import build_task
from flsim.tasks.base import Shard
from flsim.tasks.lazy_clients import LazyClients, shard_bytes
from flsim.tasks.streamed import LeastSquaresStats, streamed_least_squares
from tests.builders import tiny_linreg


def _linreg(num_clients: int = 40, **params) -> TaskConfig:
    return TaskConfig(
        dataset="linreg",
        num_clients=num_clients,
        dataset_params={"dim": 6, "samples_per_client": 9, "test_samples": 25, **params},
    )


@pytest.fixture
def force_lazy(monkeypatch):
    monkeypatch.setattr(convex, "LAZY_MIN_FLOATS", 0)


def test_small_populations_stay_eager():
    assert isinstance(build_task(_linreg(), 0).clients, list)
    assert convex.is_lazy(10**3, 20, 50) and convex.is_lazy(10**6, 20, 50)
    assert not convex.is_lazy(100, 50, 100)  # 10x the largest shipped convex scenario's pool


@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_lazy_linreg_has_the_eager_rows_and_constants(l2, monkeypatch):
    eager = build_task(_linreg(l2=l2), 5)
    monkeypatch.setattr(convex, "LAZY_MIN_FLOATS", 0)
    lazy = build_task(_linreg(l2=l2), 5)
    assert isinstance(lazy.clients, LazyClients)
    for i in (0, 17, 39):
        assert torch.equal(eager.clients[i].x, lazy.clients[i].x)
        assert torch.equal(eager.clients[i].y, lazy.clients[i].y)
    assert torch.equal(eager.test.x, lazy.test.x) and torch.equal(eager.test.y, lazy.test.y)
    assert list(eager.smoothness) == list(lazy.smoothness)
    assert list(eager.strong_convexity) == list(lazy.strong_convexity)
    assert eager.client_sizes() == lazy.client_sizes()


@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_streamed_optimum_matches_the_pooled_lstsq(l2, monkeypatch):
    eager = build_task(_linreg(l2=l2), 2)
    monkeypatch.setattr(convex, "LAZY_MIN_FLOATS", 0)
    monkeypatch.setattr(convex, "STREAM_CHUNK", 7)  # several chunks, one partial
    lazy = build_task(_linreg(l2=l2), 2)
    lazy.resolve_optimum()
    assert torch.allclose(lazy.optimum, eager.optimum, rtol=0, atol=1e-10)
    assert lazy.optimum_value == pytest.approx(eager.optimum_value, rel=1e-10, abs=1e-12)
    x = torch.linspace(-1, 1, 6, dtype=torch.float64)
    assert lazy.global_loss(x) == pytest.approx(eager.global_loss(x), rel=1e-10)
    assert lazy.global_loss(lazy.optimum) == lazy.optimum_value


def test_streamed_least_squares_against_direct_lstsq():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((300, 5)) * [1, 2, 3, 0.5, 4], rng.standard_normal(300)
    stats = LeastSquaresStats(5).add_chunks([(a[:100], b[:100]), (a[100:], b[100:])])
    x, _, value = streamed_least_squares(stats, 0.0)
    direct = np.linalg.lstsq(a, b, rcond=None)[0]
    assert np.abs(x - direct).max() < 1e-10
    assert value == pytest.approx(0.5 * float(np.sum((a @ direct - b) ** 2)) / 300, rel=1e-10)
    wrong, _, _ = streamed_least_squares(LeastSquaresStats(5).add_chunks([(a[:100], b[:100])]), 0.0)
    assert np.abs(wrong - direct).max() > 1e-3  # a missed chunk shows


def _shard(i: int) -> Shard:
    return Shard(torch.full((4, 3), float(i), dtype=torch.float64), torch.full((4,), float(i)))


def test_cache_evicts_to_its_bounds_and_rebuilds_identically():
    clients = LazyClients(1000, _shard, lambda: [4] * 1000, max_bytes=None, max_clients=3)
    for i in range(50):
        assert float(clients[i].x[0, 0]) == i
        assert clients.cached_clients <= 3
    assert clients.builds == 50
    assert torch.equal(clients[0].x, _shard(0).x) and clients.builds == 51  # evicted, rebuilt
    clients[0]
    assert clients.builds == 51  # cached now
    one = shard_bytes(_shard(0))
    clients.configure(max_bytes=2 * one)
    assert clients.cached_bytes <= 2 * one
    for i in range(200):
        clients[i]
        assert clients.cached_bytes <= 2 * one
    with pytest.raises(IndexError):
        clients[1000]
    assert float(clients[-1].x[0, 0]) == 999


def _metrics(tmp_path, name: str, backend: dict) -> list[dict]:
    raw = tiny_linreg(
        task={"num_clients": 30, "dataset_params": {"dim": 5, "samples_per_client": 20}},
        clients_per_round=6,
        rounds=5,
        backend=backend,
    )
    flsim.run(raw, run_dir=tmp_path / name)
    rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "wall_time"} for row in rows]


def test_results_do_not_depend_on_the_cache_size(tmp_path, force_lazy):
    one = _metrics(tmp_path, "one", {"client_cache_clients": 1})
    everyone = _metrics(tmp_path, "all", {"client_cache_clients": 30})
    tiny = _metrics(tmp_path, "mb", {"client_cache_mb": 1e-4})
    assert one == everyone == tiny
    assert len(one) == 6 and "optimality_gap" in one[-1]


def test_lazy_run_matches_the_eager_run_closely(tmp_path, monkeypatch):
    eager = _metrics(tmp_path, "eager", {})
    monkeypatch.setattr(convex, "LAZY_MIN_FLOATS", 0)
    lazy = _metrics(tmp_path, "lazy", {})
    for a, b in zip(eager, lazy, strict=True):
        assert a["test_loss"] == b["test_loss"]  # same rows, same updates
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-10)


@pytest.mark.parametrize("key,value", [("client_cache_mb", 0), ("client_cache_clients", 0)])
def test_a_non_positive_cache_bound_exits_2_naming_the_key(tmp_path, capsys, key, value):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**tiny_linreg(rounds=1), "backend": {key: value}}))
    assert main(["validate", str(path)]) == 2
    assert f"backend.{key}" in capsys.readouterr().err


def test_sampling_k_of_n_costs_o_k():
    """NumPy's Generator.choice(replace=False) uses Floyd's algorithm here (O(K) time and memory):
    an O(N) sampler would need terabytes for N = 10¹²."""
    started = time.perf_counter()
    chosen = sample_clients(3, 7, 10**12, "fixed", 200, 0.0)
    assert time.perf_counter() - started < 1.0
    assert len(set(chosen)) == 200 and chosen == sorted(chosen) and chosen[0] >= 0 and chosen[-1] < 10**12
    assert chosen == sample_clients(3, 7, 10**12, "fixed", 200, 0.0)
    assert chosen != sample_clients(3, 8, 10**12, "fixed", 200, 0.0)


def test_sampling_is_uniform():
    """Each of N = 20 clients is drawn K/N of the time over many rounds (chi-square, 19 dof)."""
    counts = np.zeros(20)
    rounds = 4000
    for r in range(rounds):
        counts[sample_clients(0, r, 20, "fixed", 5, 0.0)] += 1
    expected = rounds * 5 / 20
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 43.8  # p = 0.001 for 19 degrees of freedom


@pytest.mark.parametrize("l2", [1e-3, 0.1])
def test_lazy_logreg_streams_newton_to_the_pooled_optimum(l2, monkeypatch):
    cfg = TaskConfig(
        dataset="logreg",
        num_clients=30,
        dataset_params={"dim": 4, "samples_per_client": 12, "test_samples": 20, "l2": l2},
    )
    eager = build_task(cfg, 9)
    monkeypatch.setattr(convex, "LAZY_MIN_FLOATS", 0)
    monkeypatch.setattr(convex, "STREAM_CHUNK", 4)
    lazy = build_task(cfg, 9)
    lazy.resolve_optimum()
    assert isinstance(lazy.clients, LazyClients) and lazy.classification and lazy.num_classes == 2
    assert torch.equal(eager.clients[29].x, lazy.clients[29].x) and torch.equal(eager.test.y, lazy.test.y)
    assert list(eager.smoothness) == list(lazy.smoothness)
    assert list(eager.strong_convexity) == list(lazy.strong_convexity)
    assert torch.allclose(lazy.optimum, eager.optimum, rtol=0, atol=1e-10)
    x = torch.linspace(-1, 1, 4, dtype=torch.float64)
    assert lazy.global_loss(x) == pytest.approx(eager.global_loss(x), rel=1e-12)
    assert lazy.evaluate(x)["test_acc"] == eager.evaluate(x)["test_acc"]


def test_hosts_apply_the_backend_cache_bounds(force_lazy):
    from flsim.hosts.client_host import ClientHost
    from flsim.scenario import load_scenario

    host = ClientHost(load_scenario(tiny_linreg(backend={"client_cache_clients": 2, "client_cache_mb": 0.5})))
    clients = host.task.clients
    assert isinstance(clients, LazyClients)
    assert clients.max_clients == 2 and clients.max_bytes == 2**19
    server = host.algorithm.init_server(torch.zeros(5, dtype=torch.float64))
    host.run_clients(host.algorithm.broadcast(server, 0), [0, 1, 2, 3], 0)
    assert clients.cached_clients == 2


def test_the_optimum_pass_waits_for_the_first_evaluation(force_lazy, monkeypatch):
    """Hosts that only run clients (Ray actors) build the task but never pay the O(N) pass."""
    passes = []
    chunks = convex._client_chunks
    monkeypatch.setattr(convex, "_client_chunks", lambda *a: passes.append(1) or chunks(*a))
    task = build_task(_linreg(), 4)
    task.clients[3]
    assert not passes and task.optimum is None and task.pending_optimum is not None
    metrics = task.evaluate(torch.zeros(6, dtype=torch.float64))
    assert passes == [1] and task.optimum is not None and metrics["optimality_gap"] > 0
    task.evaluate(torch.ones(6, dtype=torch.float64))
    assert passes == [1]


@pytest.mark.parametrize("dataset", ["linreg", "logreg"])
def test_a_prefetched_round_has_the_rows_client_by_client_builds_give(dataset, force_lazy):
    """A round's first-time clients come from one block pass (``prefetch``); each shard must be
    the one ``clients[i]`` alone would build, whatever the order and repeats of the ids."""
    config = _linreg() if dataset == "linreg" else TaskConfig(dataset="logreg", num_clients=40)
    one_by_one = build_task(config, 3).clients
    prefetched = build_task(config, 3).clients
    ids = [31, 2, 17, 2, 39, 0]
    prefetched.prefetch(ids)
    assert prefetched.builds == 5 and prefetched.cached_clients == 5  # the repeat built once
    for i in ids:
        assert torch.equal(prefetched[i].x, one_by_one[i].x)
        assert torch.equal(prefetched[i].y, one_by_one[i].y)
    assert prefetched.builds == 5  # every id above was served from the prefetch
    prefetched.prefetch([2, 17, 5])
    assert prefetched.builds == 6  # only the uncached one
    shard = prefetched[5]
    assert shard.x.untyped_storage().nbytes() == shard.x.numel() * shard.x.element_size()  # owns its rows


def test_prefetch_builds_no_more_than_the_cache_holds(force_lazy):
    clients = build_task(_linreg(), 3).clients
    clients.configure(max_bytes=None, max_clients=2)
    clients.prefetch([4, 9, 11, 20])
    assert clients.builds == 2 and clients.cached_clients == 2


@pytest.mark.parametrize("vectorize", ["on", "off"])
def test_round_hosts_build_their_clients_in_one_prefetch(tmp_path, force_lazy, monkeypatch, vectorize):
    """Client by client building is refused here, so the run passes only if every sampled
    client came from the round's block prefetch (batched and loop paths alike)."""

    def refused(self, i):
        raise AssertionError(f"client {i} built on its own")

    monkeypatch.setattr(convex._LinregSpec, "train", refused)
    rows = _metrics(tmp_path, vectorize, {"vectorize": vectorize})
    assert len(rows) == 6 and rows[-1]["optimality_gap"] < rows[0]["optimality_gap"]
