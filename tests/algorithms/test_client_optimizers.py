"""``algorithm.client_optimizer``: each rule against a reference computation, and its validation."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import flsim
from flsim.algorithms import REGISTRY
from flsim.algorithms.client import ClientContext
from flsim.algorithms.client_optimizers import ALL_OPTIMIZERS, STATE_PREFIX, run_with_optimizer_state
from flsim.algorithms.fedavg import FedAvg
from flsim.config.errors import ConfigError
from flsim.optim import AdamP
from flsim.optim.flat import layout_of
from flsim.scenario import load_scenario
from flsim.tasks.base import ModuleObjective, Shard
from tests.builders import metrics_without_wall_time, tiny_digits, tiny_linreg
from tests.trust.helpers import cli, one_error_line, write_scenario

ROOT = Path(__file__).resolve().parents[2]


def _algorithm(name: str = "fedavg", **keys) -> dict:
    return {"name": name, "lr": 0.05, "local_steps": 3, "batch_size": 8, **keys}


def _metrics(raw: dict, run_dir: Path) -> list[dict]:
    return metrics_without_wall_time(flsim.run(raw, run_dir=run_dir).run_dir)


# -- equivalences with rules that existed before ------------------------------------------------


def test_sam_client_optimizer_on_fedavg_is_fedsam_bit_for_bit(tmp_path):
    loop = {"vectorize": "off"}  # FedSAM alone may run batched (equal to 1e-5, not bit for bit)
    sam = tiny_digits(
        algorithm=_algorithm(client_optimizer={"name": "sam", "rho": 0.05}), rounds=3, backend=loop
    )
    fedsam = tiny_digits(algorithm=_algorithm("fedsam", rho=0.05), rounds=3, backend=loop)
    assert _metrics(sam, tmp_path / "a") == _metrics(fedsam, tmp_path / "b")


def test_sam_client_optimizer_on_dfedavg_is_dfedsam_bit_for_bit(tmp_path):
    def ring(algorithm):
        return tiny_linreg(algorithm=algorithm, topology={"kind": "ring"}, clients_per_round=None, rounds=3)

    sam = ring(_algorithm("dfedavg", client_optimizer={"name": "sam", "rho": 0.1}))
    dfedsam = ring(_algorithm("dfedsam", rho=0.1))
    assert _metrics(sam, tmp_path / "a") == _metrics(dfedsam, tmp_path / "b")


def test_sgdp_without_scale_invariant_weights_is_momentum_sgd(tmp_path):
    """SGDP's projection cannot fire on a vector (linreg), so it is heavy-ball SGD, step for step."""
    keys = {"momentum": 0.9, "batch_size": "full"}
    loop = {"vectorize": "off"}  # compare the rules, not the batched execution of plain SGD
    sgdp = tiny_linreg(algorithm=_algorithm(client_optimizer={"name": "sgdp"}, **keys), backend=loop)
    sgd = tiny_linreg(algorithm=_algorithm(**keys), backend=loop)
    for a, b in zip(_metrics(sgdp, tmp_path / "a"), _metrics(sgd, tmp_path / "b"), strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-12, abs=1e-15), key


def test_drop_muon_starting_at_the_first_layer_is_muon_with_full_uploads(tmp_path):
    """s ≡ 0: every layer trains and is sent, so the run is Muon's, bytes included."""
    drop = {"name": "drop_muon", "max_start_layer": 0, "state": "persist"}
    muon = {"name": "muon", "state": "persist"}
    a = _metrics(tiny_digits(algorithm=_algorithm(lr=0.02, client_optimizer=drop)), tmp_path / "a")
    b = _metrics(tiny_digits(algorithm=_algorithm(lr=0.02, client_optimizer=muon)), tmp_path / "b")
    assert a == b
    assert a[-1]["bytes_up"] > 0


# -- persistent state ---------------------------------------------------------------------------


def test_sgd_with_persisted_momentum_continues_the_buffer_across_rounds(tmp_path):
    """Full participation, full batches: the momentum of round t+1 starts from round t's buffer."""
    from tests.builders import make_simulation

    opt = {"name": "sgd", "state": "persist"}
    raw = tiny_linreg(
        algorithm=_algorithm(momentum=0.5, batch_size="full", client_optimizer=opt),
        clients_per_round=None,
        rounds=2,
    )
    simulation = make_simulation(raw, tmp_path)
    buffers: dict[int, torch.Tensor] = {}
    for round_index in range(2):
        x = simulation.server["x"].clone()
        for reply in simulation.run_round(round_index):
            shard = simulation.task.clients[reply.client]
            y, buffer = x.clone(), buffers.get(reply.client)
            for _ in range(3):
                g = shard.x.T @ (shard.x @ y - shard.y) / len(shard)
                buffer = g if buffer is None else 0.5 * buffer + g
                y = y - 0.05 * buffer
            buffers[reply.client] = buffer
            torch.testing.assert_close(reply.message["delta"], y - x, rtol=0, atol=1e-13)


def test_persist_and_reset_agree_on_the_first_visit_and_differ_afterwards(tmp_path):
    def run(state: str, name: str) -> list[dict]:
        algorithm = _algorithm(lr=0.01, client_optimizer={"name": "adam", "state": state})
        raw = tiny_digits(algorithm=algorithm, clients_per_round=8, rounds=3, eval={"every": 1})
        return _metrics(raw, tmp_path / name)

    persist, reset = run("persist", "p"), run("reset", "r")
    assert persist[:2] == reset[:2]  # rows 0 (initial model) and 1 (every client's first visit)
    assert persist[2]["train_loss"] != reset[2]["train_loss"]


@pytest.mark.parametrize("budget_mb", [None, 0.001])
def test_persisted_state_survives_a_resume_bit_identically(tmp_path, budget_mb):
    """The Adam moments are checkpointed with the client states (and spilled to disk with a budget)."""
    from flsim.engine.simulation import RoundSimulation
    from tests.builders import run_until_crash

    opt = {"name": "adamp", "state": "persist"}
    raw = tiny_digits(
        algorithm=_algorithm(lr=0.01, client_optimizer=opt),
        rounds=6,
        eval={"every": 1},
        checkpoint={"every": 2},
        backend={"state_memory_mb": budget_mb},
    )
    full = _metrics(raw, tmp_path / "full")
    run_until_crash(raw, tmp_path / "crashed", RoundSimulation, 5)
    resumed = flsim.resume(tmp_path / "crashed")
    assert metrics_without_wall_time(resumed.run_dir) == full


def test_gossip_nodes_keep_their_optimizer_state(tmp_path):
    from flsim.hosts.node_host import NodeHost

    opt = {"name": "adam", "state": "persist"}
    raw = tiny_linreg(
        algorithm=_algorithm("dfedavg", client_optimizer=opt),
        topology={"kind": "ring"},
        clients_per_round=None,
    )
    scenario = load_scenario(raw)
    host = NodeHost(scenario)
    host.local(list(range(6)), 0)
    state = host.states[0]
    assert {STATE_PREFIX + "exp_avg", STATE_PREFIX + "exp_avg_sq", STATE_PREFIX + "per_block.step"} <= set(
        state
    )
    assert int(state[STATE_PREFIX + "per_block.step"][0]) == 3


# -- AdamP in a client: the projection fires exactly on the scale-invariant weights -----------


def _normalised_objective() -> ModuleObjective:
    """64 → 16 without bias, then BatchNorm (no affine): each row of that weight is
    scale-invariant; the 16 → 10 head is not. Weights come from ``init_params`` (seeded)."""
    module = nn.Sequential(
        nn.Linear(64, 16, bias=False, dtype=torch.float64),
        nn.BatchNorm1d(16, affine=False, dtype=torch.float64),
        nn.ReLU(),
        nn.Linear(16, 10, dtype=torch.float64),
    )
    return ModuleObjective(module, nn.CrossEntropyLoss())


def _client(objective, steps: int, opt: dict) -> tuple[torch.Tensor, torch.Tensor, dict, ClientContext]:
    generator = torch.Generator().manual_seed(3)
    x0 = objective.init_params(generator)
    data = torch.randn(96, 64, generator=generator, dtype=torch.float64)
    labels = torch.randint(10, (96,), generator=generator)
    cfg = FedAvg.Config.model_validate(
        _algorithm(lr=0.01, local_steps=steps, batch_size=32, client_optimizer=opt)
    )
    algorithm = FedAvg(cfg, 1, [96])
    ctx = ClientContext(0, Shard(data, labels), objective, torch.Generator().manual_seed(5), 32, 0.01, 0)
    out, state = run_with_optimizer_state(algorithm.client_update, {"x": x0}, {}, ctx)
    return x0, x0 + out["delta"], state, ctx


def test_adamp_projects_the_normalised_layer_on_every_step_and_the_plain_head_never():
    objective = _normalised_objective()
    _, _, state, _ = _client(objective, 6, {"name": "adamp", "state": "persist"})
    projected = state[STATE_PREFIX + "per_block.projected_steps"].tolist()
    blocks = layout_of(objective).blocks
    assert [block.shape for block in blocks] == [(16, 64), (10, 16), (10,)]
    assert projected == [6, 0, 0]


def test_adamp_in_a_client_is_the_optimizer_run_on_the_module():
    """The flat client run is torch AdamP on the same module, batches and rate."""
    objective = _normalised_objective()
    reference = copy.deepcopy(objective.module)
    x0, y, _, _ = _client(objective, 4, {"name": "adamp"})
    params = list(reference.parameters())
    torch.nn.utils.vector_to_parameters(x0, params)
    optimizer = AdamP(params, lr=0.01)
    generator = torch.Generator().manual_seed(3)
    objective.init_params(generator)
    data = torch.randn(96, 64, generator=generator, dtype=torch.float64)
    labels = torch.randint(10, (96,), generator=generator)
    ctx = ClientContext(0, Shard(data, labels), objective, torch.Generator().manual_seed(5), 32, 0.01, 0)
    batches = ctx.batches()
    for _ in range(4):
        batch = next(batches)
        optimizer.zero_grad()
        nn.CrossEntropyLoss()(reference(batch.x), batch.y).backward()
        optimizer.step()
    # Equal up to the last bit of a reduction (views at other offsets vectorise differently).
    torch.testing.assert_close(
        torch.nn.utils.parameters_to_vector(params).detach(), y, rtol=1e-14, atol=1e-16
    )


# -- validation: exit 2 naming the key, before anything is written -----------------------------


@pytest.mark.parametrize(
    ("algorithm", "key"),
    [
        (_algorithm("fedsam", client_optimizer={"name": "adam"}), "algorithm.client_optimizer.name"),
        (_algorithm("scaffold", client_optimizer={"name": "muon"}), "algorithm.client_optimizer.name"),
        (_algorithm("fedspeed", client_optimizer={"name": "sgdp"}), "algorithm.client_optimizer.name"),
        (_algorithm(client_optimizer={"name": "lion"}), "algorithm.client_optimizer.name"),
        (
            _algorithm(client_optimizer={"name": "adamp", "betas": [0.9, 1.5]}),
            "algorithm.client_optimizer.betas.1",
        ),
        (
            _algorithm(client_optimizer={"name": "muon", "ns_steps": 0}),
            "algorithm.client_optimizer.ns_steps",
        ),
        (
            _algorithm(client_optimizer={"name": "sgd", "state": "keep"}),
            "algorithm.client_optimizer.state",
        ),
        (_algorithm(momentum=0.9, client_optimizer={"name": "adam"}), "algorithm.momentum"),
    ],
)
def test_bad_client_optimizer_exits_2_naming_the_key(tmp_path, capsys, algorithm, key):
    path = write_scenario(
        tmp_path / "s.yaml", tiny_linreg(algorithm=algorithm, output={"dir": str(tmp_path / "out")})
    )
    code, _, err = cli(capsys, "run", str(path), "--progress", "off")
    assert code == 2
    assert one_error_line(err).startswith(f"flsim: config error: {key}: "), err
    assert not (tmp_path / "out").exists()


def test_drop_muon_is_not_combined_with_compression():
    raw = tiny_digits(
        algorithm=_algorithm(client_optimizer={"name": "drop_muon"}),
        compression={"uplink": {"kind": "topk", "k": 2}},
    )
    with pytest.raises(ConfigError, match=r"^algorithm\.client_optimizer\.name: "):
        load_scenario(raw)


def test_the_docs_table_lists_what_each_algorithm_accepts():
    """docs/client_optimizers.md's table is the registry's ``client_optimizers``, row by row."""
    text = (ROOT / "docs/client_optimizers.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", text, flags=re.MULTILINE))
    for name, algorithm in REGISTRY.items():
        if not algorithm.__module__.startswith("flsim."):
            continue  # a plugin installed by another test
        accepted = getattr(algorithm, "client_optimizers", frozenset({"sgd"}))
        assert accepted <= ALL_OPTIMIZERS
        listed = set(re.findall(r"`(\w+)`", rows[name]))
        assert listed == set(accepted), name


def test_muon_steps_are_orthogonalised_per_matrix():
    """One Muon step from zero momentum moves each matrix by lr·√max(1, r/c)·NS5(g): its
    singular values lie in NS5's band around 1 (times the shape factor), not the gradient's."""
    objective = _normalised_objective()
    x0, y, _, _ = _client(objective, 1, {"name": "muon", "nesterov": False})
    block = layout_of(objective).blocks[0]
    step = (x0 - y)[block.offset : block.offset + block.numel].view(block.shape) / 0.01
    singular = torch.linalg.svdvals(step)
    assert float(singular.min()) > 0.6 and float(singular.max()) < 1.25
    assert math.isclose(float(step.norm()) ** 2 / 16, float((singular**2).mean()), rel_tol=1e-9)
