"""EControl, EF14, EF21, EF21-SGDM and compressed SGD through the round engine (docs/algorithms.md E)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

import flsim
from flsim.algorithms import REGISTRY
from flsim.compression import TopK
from flsim.compression.kernels import econtrol_init, econtrol_step, ef21_init, ef21_step
from flsim.compression.wire import decode
from flsim.config.errors import ConfigError, ConfigErrors
from flsim.scenario import load_scenario
from tests.algorithms_compression.test_wire import deserialise, serialise
from tests.builders import make_simulation, metrics_without_wall_time, tiny_linreg

EF_ALGORITHMS = ["compressed_sgd", "econtrol", "ef14", "ef21", "ef21_sgdm"]
GAMMA = 0.1


def scenario(name: str, compressor: dict[str, Any] | None = None, **algorithm: Any) -> dict[str, Any]:
    """tiny_linreg (6 heterogeneous clients, d = 5), full gradients, full participation, Top-1."""
    algo = {
        "name": name,
        "lr": GAMMA,
        "batch_size": "full",
        "compressor": compressor or {"kind": "topk", "k": 1},
    }
    return tiny_linreg(algorithm={**algo, **algorithm}, clients_per_round=None, rounds=1000)


def client_grad(task, i: int, x: Tensor) -> Tensor:
    """∇f_i(x) = A_iᵀ(A_i x − b_i)/n_i (l2 = 0), from the shard directly."""
    shard = task.clients[i]
    return shard.x.T @ (shard.x @ x - shard.y) / shard.x.shape[0]


def global_grad(task, x: Tensor) -> Tensor:
    return torch.stack([client_grad(task, i, x) for i in range(task.num_clients)]).mean(0)


def model(simulation) -> Tensor:
    return simulation.algorithm.global_model(simulation.server).clone()


def close(a: Tensor, b: Tensor, rtol: float = 1e-13) -> bool:
    return bool((a - b).abs().max() <= rtol * max(1.0, float(b.abs().max())))


# ---------------------------------------------------------------- (a) identity compressor
@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
def test_econtrol_with_identity_is_gradient_descent_for_any_eta(tmp_path: Path, eta: float) -> None:
    simulation = make_simulation(scenario("econtrol", {"kind": "identity"}, eta=eta), tmp_path)
    x = model(simulation)
    for t in range(15):
        simulation.run_round(t)
        x = x - GAMMA * global_grad(simulation.task, x)
        assert close(model(simulation), x), f"round {t}"
    states = simulation.backend.get_states()
    assert all(torch.count_nonzero(states[i]["e"]) == 0 for i in range(6))  # the error stays exactly 0


def test_econtrol_with_topk_is_not_gradient_descent(tmp_path: Path) -> None:
    """The check above can fail: a lossy compressor changes the iterates from the second step on."""
    simulation = make_simulation(scenario("econtrol"), tmp_path)
    x = model(simulation)
    for t in range(2):
        simulation.run_round(t)
        x = x - GAMMA * global_grad(simulation.task, x)
    assert not close(model(simulation), x, rtol=1e-6)


# ---------------------------------------------------------------- (b) virtual iterate
@pytest.mark.parametrize("eta", [None, 0.05, 1.0])
def test_econtrol_virtual_iterate_moves_along_the_true_gradient(tmp_path: Path, eta: float | None) -> None:
    """x − γ ē evolves as x − γ ḡ exactly (E1: e_i + h_i advances by g_i; E2: x steps by h)."""
    raw = scenario("econtrol", {"kind": "topk", "k": 2}, **({} if eta is None else {"eta": eta}))
    simulation = make_simulation(raw, tmp_path)
    simulation.initialize()
    n = simulation.task.num_clients

    def virtual() -> Tensor:
        states = simulation.backend.get_states()
        return model(simulation) - GAMMA * torch.stack([states[i]["e"] for i in range(n)]).mean(0)

    for t in range(30):
        before, x = virtual(), model(simulation)
        simulation.run_round(t)
        assert close(virtual(), before - GAMMA * global_grad(simulation.task, x)), f"round {t}"
    e = simulation.backend.get_states()[0]["e"]
    assert float(e.abs().max()) > 1e-3  # the error is not trivially zero: the identity is not vacuous


# ---------------------------------------------------------------- (c) η = 0 is EF21
@pytest.mark.parametrize("compressor", [{"kind": "topk", "k": 1}, {"kind": "sign"}])
def test_econtrol_with_eta_zero_equals_ef21_iterate_for_iterate(tmp_path: Path, compressor) -> None:
    econtrol = make_simulation(scenario("econtrol", compressor, eta=0.0), tmp_path / "econtrol")
    ef21 = make_simulation(scenario("ef21", compressor), tmp_path / "ef21")
    for t in range(40):
        econtrol.run_round(t)
        ef21.run_round(t)
        assert torch.equal(model(econtrol), model(ef21)), f"round {t}"
    assert econtrol.counters.bytes_up == ef21.counters.bytes_up


def test_econtrol_with_positive_eta_differs_from_ef21(tmp_path: Path) -> None:
    econtrol = make_simulation(scenario("econtrol", eta=0.5), tmp_path / "econtrol")
    ef21 = make_simulation(scenario("ef21"), tmp_path / "ef21")
    for t in range(5):
        econtrol.run_round(t)
        ef21.run_round(t)
    assert not torch.equal(model(econtrol), model(ef21))


def test_ef21_sgdm_with_eta_one_is_ef21(tmp_path: Path) -> None:
    momentum = make_simulation(scenario("ef21_sgdm", eta=1.0), tmp_path / "sgdm")
    ef21 = make_simulation(scenario("ef21"), tmp_path / "ef21")
    for t in range(20):
        momentum.run_round(t)
        ef21.run_round(t)
        assert torch.equal(model(momentum), model(ef21)), f"round {t}"


# ---------------------------------------------------------------- the recursions themselves
def test_econtrol_and_ef21_follow_the_reference_kernels(tmp_path: Path) -> None:
    """Round t of the engine is step t + 1 of E1–E2 / E4 after the uncompressed init."""
    econtrol = make_simulation(scenario("econtrol", eta=0.3), tmp_path / "econtrol")
    ef21 = make_simulation(scenario("ef21"), tmp_path / "ef21")
    task = econtrol.task

    def grad(i: int, x: Tensor) -> Tensor:
        return client_grad(task, i, x)

    x = y = model(econtrol)
    ec_state, _ = econtrol_init(x, grad, 6)
    ef_state, _ = ef21_init(y, grad, 6)
    for t in range(30):
        econtrol.run_round(t)
        ef21.run_round(t)
        x, ec_state, _ = econtrol_step(x, ec_state, grad, GAMMA, 0.3, TopK(k=1))
        y, ef_state, _ = ef21_step(y, ef_state, grad, GAMMA, TopK(k=1))
        assert close(model(econtrol), x, rtol=1e-12), f"econtrol, round {t}"
        assert close(model(ef21), y, rtol=1e-12), f"ef21, round {t}"
    assert close(econtrol.server["h"], ec_state.h_mean, rtol=1e-12)


def test_ef14_matches_its_recursion(tmp_path: Path) -> None:
    """(E3) p_i = γ g_i + e_i; Δ_i = C(p_i); e_i ← p_i − Δ_i; x ← x − mean Δ_i, written out here."""
    simulation = make_simulation(scenario("ef14", {"kind": "topk", "k": 2}), tmp_path)
    x = model(simulation)
    e = [torch.zeros_like(x) for _ in range(6)]
    for t in range(30):
        simulation.run_round(t)
        deltas = []
        for i in range(6):
            p = GAMMA * client_grad(simulation.task, i, x) + e[i]
            keep = torch.topk(p.abs(), 2).indices
            delta = torch.zeros_like(p)
            delta[keep] = p[keep]
            deltas.append(delta)
            e[i] = p - delta
        x = x - torch.stack(deltas).mean(0)
        assert close(model(simulation), x, rtol=1e-12), f"round {t}"
        states = simulation.backend.get_states()
        assert all(close(states[i]["e"], e[i], rtol=1e-12) for i in range(6))


# ---------------------------------------------------------------- (d) convergence with Top-1
def gaps(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row["optimality_gap"] for row in rows]


def run(raw: dict[str, Any], path: Path, rounds: int, every: int = 10) -> list[float]:
    raw = {**raw, "rounds": rounds, "eval": {"every": every}}
    return gaps(flsim.run(raw, run_dir=path).run_dir)


def test_top1_econtrol_and_ef21_converge_linearly_uncorrected_compression_stalls(tmp_path: Path) -> None:
    econtrol = run(scenario("econtrol"), tmp_path / "econtrol", 250)
    ef21 = run(scenario("ef21"), tmp_path / "ef21", 250)
    plain = run(scenario("compressed_sgd"), tmp_path / "plain", 250)
    assert econtrol[-1] < 1e-10
    assert ef21[-1] < 1e-10
    assert min(plain[-10:]) > 1e-3  # a floor 10⁷ times above the corrected methods'
    assert econtrol[5] < 1e-2 * econtrol[0] and ef21[5] < 1e-2 * ef21[0]  # fast decrease, not luck at the end


def test_ef14_floor_shrinks_with_the_step_size(tmp_path: Path) -> None:
    large = run(scenario("ef14", lr=0.1), tmp_path / "large", 400, every=5)
    small = run(scenario("ef14", lr=0.02), tmp_path / "small", 400, every=5)
    floor_large, floor_small = max(large[-20:]), max(small[-20:])  # the last 100 rounds
    assert floor_large > 1e-4  # a floor, not convergence
    assert floor_small > 1e-7
    assert floor_small < floor_large / 5


# ---------------------------------------------------------------- partial participation, stochastic
def partial(name: str) -> dict[str, Any]:
    return tiny_linreg(
        algorithm={"name": name, "lr": 0.05, "batch_size": 8, "compressor": {"kind": "topk", "k": 2}},
        clients_per_round=3,
        rounds=8,
        eval={"every": 2},
    )


@pytest.mark.parametrize("name", EF_ALGORITHMS)
def test_partial_participation_is_deterministic(tmp_path: Path, name: str) -> None:
    first = flsim.run(partial(name), run_dir=tmp_path / "a")
    second = flsim.run(partial(name), run_dir=tmp_path / "b")
    assert metrics_without_wall_time(first.run_dir) == metrics_without_wall_time(second.run_dir)
    assert first.final["train_loss"] < metrics_without_wall_time(first.run_dir)[0]["train_loss"]


@pytest.mark.parametrize("name", ["econtrol", "ef21"])
def test_server_shift_is_the_mean_over_all_clients_under_partial_participation(
    tmp_path: Path, name: str
) -> None:
    simulation = make_simulation(partial(name), tmp_path)
    key = {"econtrol": "h", "ef21": "g"}[name]
    for t in range(8):
        simulation.run_round(t)
        states = simulation.backend.get_states()
        mean = torch.stack([states[i][key] for i in range(6)]).mean(0)
        assert close(simulation.server[key], mean, rtol=1e-13), f"round {t}"
    assert simulation.counters.grad_evals == 6 + 8 * 3  # the init phase asks every client once


# ---------------------------------------------------------------- bytes
@pytest.mark.parametrize("name", EF_ALGORITHMS)
def test_bytes_up_are_the_serialised_topk_messages(tmp_path: Path, name: str) -> None:
    simulation = make_simulation(scenario(name, {"kind": "topk", "k": 2}), tmp_path)
    simulation.initialize()
    d = simulation.task.dim
    init_bytes = 6 * d * 8 if name in ("econtrol", "ef21", "ef21_sgdm") else 0  # E "Init", uncompressed
    assert simulation.counters.bytes_up == init_bytes
    per_message = TopK(k=2).message_nbytes(d, torch.float64)
    assert per_message == 2 * (8 + 1)
    x = model(simulation)
    for t in range(3):
        before = simulation.backend.get_states()
        replies = simulation.run_round(t)
        after = simulation.backend.get_states()
        for reply in replies:
            wire = serialise(reply.message)
            assert len(wire) == reply.bytes_up == per_message
            received = decode(simulation.algorithm.compressor, deserialise(wire, reply.message), x)
            assert int(torch.count_nonzero(received)) <= 2
            if name in ("ef21", "ef21_sgdm"):  # the bytes carry exactly what the client accounted for
                assert torch.equal(after[reply.client]["g"], before[reply.client]["g"] + received)
            if name == "econtrol":
                assert torch.equal(after[reply.client]["h"], before[reply.client]["h"] + received)
    assert simulation.counters.bytes_up == init_bytes + 3 * 6 * per_message
    assert simulation.counters.bytes_down == 3 * 6 * d * 8 + (6 * d * 8 if init_bytes else 0)


# ---------------------------------------------------------------- validation
def error_keys(raw: dict[str, Any]) -> set[str]:
    with pytest.raises((ConfigError, ConfigErrors)) as info:
        load_scenario(raw)
    error = info.value
    return {e.key for e in error.errors} if isinstance(error, ConfigErrors) else {error.key}


@pytest.mark.parametrize(
    ("algorithm", "key"),
    [
        ({"name": "econtrol", "eta": 1.5}, "algorithm.eta"),
        ({"name": "econtrol", "eta": -0.1}, "algorithm.eta"),
        ({"name": "econtrol", "compressor": {"kind": "topk", "k": 0}}, "algorithm.compressor.k"),
        ({"name": "ef21", "compressor": {"kind": "topk", "k": 0}}, "algorithm.compressor.k"),
        ({"name": "ef14", "compressor": {"kind": "qsgd", "levels": 2}}, "algorithm.compressor"),
        ({"name": "econtrol", "local_steps": 3}, "algorithm.local_steps"),
        ({"name": "ef21", "momentum": 0.9}, "algorithm.momentum"),
        ({"name": "ef21_sgdm", "eta": 0.0}, "algorithm.eta"),
        ({"name": "compressed_sgd", "compressor": {"kind": "topk"}}, "algorithm.compressor.k"),
    ],
)
def test_bad_hyperparameters_are_rejected_by_key(algorithm: dict[str, Any], key: str) -> None:
    algo = {"lr": 0.1, "compressor": {"kind": "topk", "k": 1}, **algorithm}
    assert key in error_keys(tiny_linreg(algorithm=algo))


def test_a_compressor_is_required_and_a_channel_on_top_is_rejected() -> None:
    assert "algorithm.compressor" in error_keys(tiny_linreg(algorithm={"name": "econtrol"}))
    algo = {"name": "econtrol", "compressor": {"kind": "topk", "k": 1}}
    raw = tiny_linreg(algorithm=algo, compression={"uplink": {"kind": "topk", "k": 1}})
    assert error_keys(raw) == {"compression.uplink"}


def test_good_configurations_validate() -> None:
    load_scenario(
        tiny_linreg(algorithm={"name": "compressed_sgd", "compressor": {"kind": "qsgd", "levels": 4}})
    )
    load_scenario(
        tiny_linreg(
            algorithm={
                "name": "ef14",
                "compressor": {"kind": "qsgd", "levels": 4, "scale_to_contractive": True},
            }
        )
    )
    load_scenario(tiny_linreg(algorithm={"name": "econtrol", "eta": 0.0, "compressor": {"kind": "sign"}}))


@pytest.mark.parametrize("name", EF_ALGORITHMS)
def test_example_scenario_runs_and_is_deterministic(tmp_path: Path, name: str) -> None:
    raw = REGISTRY[name].example_scenario(tiny_linreg(rounds=3, eval={"every": 1}))
    first = flsim.run(raw, run_dir=tmp_path / "a")
    second = flsim.run(raw, run_dir=tmp_path / "b")
    assert metrics_without_wall_time(first.run_dir) == metrics_without_wall_time(second.run_dir)


# ---------------------------------------------------------------- stochastic: linear speed-up
@pytest.mark.slow
def test_stochastic_econtrol_floor_shrinks_with_more_clients(tmp_path: Path) -> None:
    """Minibatch noise sets EControl's floor at constant γ; averaging over 10× more clients lowers it."""

    def floor(num_clients: int) -> float:
        raw = tiny_linreg(
            task={"num_clients": num_clients, "dataset_params": {"dim": 10, "samples_per_client": 20}},
            algorithm={
                "name": "econtrol",
                "lr": 0.05,
                "batch_size": 2,
                "compressor": {"kind": "topk", "k": 2},
            },
            clients_per_round=None,
        )
        tail = run(raw, tmp_path / str(num_clients), 150, every=5)[-20:]  # the last 100 rounds
        return sum(tail) / len(tail)

    few, many = floor(10), floor(100)
    assert many < few / 3  # about 10× in practice (0.036 vs 0.0032 at 200 rounds)
