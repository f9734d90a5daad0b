"""FedBuff (docs/algorithms.md B6) on the buffered asynchronous driver."""

from __future__ import annotations

import io
import json

import torch

import flsim
from flsim.algorithms.base import Reply
from flsim.algorithms.fedbuff import FedBuff, FedBuffConfig
from flsim.engine.buffered import BufferedSimulation
from tests.builders import make_simulation, metrics_without_wall_time, run_until_crash, tiny_linreg

OPTIMIZER = {"lr": 0.05, "local_steps": 3, "batch_size": 8}
STRAGGLERS = {"compute": {"sigma": 1.0, "slow_fraction": 0.3, "slow_factor": 20.0, "jitter": "exponential"}}


def _fedbuff(**algorithm) -> dict:
    return tiny_linreg(
        algorithm={"name": "fedbuff", **OPTIMIZER, "buffer_size": 2, "max_concurrency": 4, **algorithm},
        rounds=10,
        system=STRAGGLERS,
    )


class Recorder:
    """Wraps the backend: checks the concurrency bound at every dispatch, remembers versions."""

    def __init__(self, simulation: BufferedSimulation) -> None:
        self.simulation = simulation
        self.inner = simulation.backend.run_clients
        self.version_of: dict[int, int] = {}  # id(reply message) -> version it trained from
        self.batches: list[list[int]] = []
        simulation.backend.run_clients = self  # type: ignore[method-assign]

    def __call__(self, message, clients, round_index, stream=None):
        in_flight = self.simulation.in_flight
        assert not set(clients) & set(in_flight), "a client was dispatched twice"
        assert len(in_flight) + len(clients) <= self.simulation.concurrency
        assert round_index == self.simulation.counters.round  # trains from the current version
        replies = self.inner(message, clients, round_index, stream)
        for reply in replies:
            self.version_of[id(reply.message)] = round_index
        self.batches.append(list(clients))
        return replies


def test_staleness_is_recorded_per_update_and_max_concurrency_is_honoured(tmp_path):
    simulation = make_simulation(_fedbuff(), tmp_path)
    assert isinstance(simulation, BufferedSimulation)
    recorder = Recorder(simulation)
    seen = []
    for update in range(30):
        replies = simulation.run_round(update)
        assert len(replies) == 2
        for reply in replies:
            expected = update - recorder.version_of[id(reply.message)]
            assert reply.extras["staleness"] == expected
            seen.append(expected)
    assert simulation.peak_in_flight == 4
    assert max(seen) >= 2 and min(seen) == 0
    assert recorder.batches[0] and len(recorder.batches[0]) == 4  # the initial fill is one batch
    row = simulation.metrics_row(replies)
    assert {"staleness", "staleness_max"} <= row.keys()


def test_metrics_rows_report_staleness_since_the_previous_row(tmp_path):
    result = flsim.run(_fedbuff() | {"eval": {"every": 5}}, run_dir=tmp_path / "run")
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["round"] for row in rows] == [0, 5, 10]
    assert "staleness" not in rows[0]
    for row in rows[1:]:
        assert 0 <= row["staleness"] <= row["staleness_max"]


def test_server_applies_the_staleness_weighted_mean_of_the_buffer():
    x = torch.tensor([1.0, 2.0], dtype=torch.float64)
    deltas = [torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([0.0, 3.0], dtype=torch.float64)]
    replies = [
        Reply(client=i, message={"delta": d}, num_samples=5, grad_evals=1, local_steps=1, bytes_up=16)
        for i, d in enumerate(deltas)
    ]
    replies[0].extras["staleness"] = 0.0
    replies[1].extras["staleness"] = 3.0
    # B6's staleness weight 1/√(1+τ): 1 for τ = 0 and 1/√4 = 0.5 for τ = 3.
    for weight, factors in (("sqrt", (1.0, 0.5)), ("none", (1.0, 1.0))):
        algorithm = FedBuff(FedBuffConfig(name="fedbuff", buffer_size=2, staleness_weight=weight), 4, [5] * 4)
        got = algorithm.aggregate({"x": x}, replies, 0)["x"]
        expected = x + 0.5 * (factors[0] * deltas[0] + factors[1] * deltas[1])
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-15)


def test_checkpoint_restore_continues_bit_identically(tmp_path):
    reference = make_simulation(_fedbuff(), tmp_path / "a")
    for update in range(8):
        reference.run_round(update)
    first = make_simulation(_fedbuff(), tmp_path / "b")
    for update in range(4):
        first.run_round(update)
    sink = io.BytesIO()
    torch.save(first.checkpoint_state(), sink)
    sink.seek(0)
    resumed = make_simulation(_fedbuff(), tmp_path / "c")
    resumed.restore(torch.load(sink, weights_only=True))  # as a resume loads it: no pickled classes
    for update in range(4, 8):
        resumed.run_round(update)
    assert torch.equal(resumed.server["x"], reference.server["x"])
    assert resumed.counters == reference.counters


def test_resume_of_a_killed_buffered_run_is_bit_identical(tmp_path):
    raw = _fedbuff() | {"checkpoint": {"every": 3}}
    reference = flsim.run(raw, run_dir=tmp_path / "ref")
    run_until_crash(raw, tmp_path / "killed", BufferedSimulation, 7, error=KeyboardInterrupt)
    resumed = flsim.api.resume(tmp_path / "killed")
    assert metrics_without_wall_time(resumed.run_dir) == metrics_without_wall_time(reference.run_dir)


def _time_to_target(raw: dict, tmp_path, target: float) -> float:
    result = flsim.run(raw, run_dir=tmp_path)
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    hits = [row["virtual_time"] for row in rows if row["optimality_gap"] <= target]
    assert hits, f"{raw['algorithm']['name']} never reached optimality_gap <= {target}"
    return hits[0]


def test_fedbuff_beats_sync_fedavg_to_a_target_loss_under_heavy_stragglers(tmp_path):
    """30% of clients 20× slower plus log-normal speeds (σ = 1): sync rounds wait for the slowest.

    Both see the same gradient work per server step (10 clients × 5 steps for FedAvg; FedBuff
    applies 5 updates of 5 steps, twice as often), and the same target on optimality_gap.
    """
    task = {"num_clients": 20, "dataset_params": {"dim": 10, "samples_per_client": 30, "heterogeneity": 0.5}}
    local = {"lr": 0.05, "local_steps": 5, "batch_size": 10}
    fedavg = tiny_linreg(
        task=task, system=STRAGGLERS, algorithm={"name": "fedavg", **local}, clients_per_round=10, rounds=12
    )
    fedbuff = tiny_linreg(
        task=task,
        system=STRAGGLERS,
        algorithm={"name": "fedbuff", **local, "buffer_size": 5, "max_concurrency": 10},
        rounds=20,
    )
    target = 1e-2
    sync_time = _time_to_target(fedavg, tmp_path / "sync", target)
    async_time = _time_to_target(fedbuff, tmp_path / "async", target)
    assert async_time < 0.5 * sync_time, (async_time, sync_time)
