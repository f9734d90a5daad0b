"""Closed forms and identities between algorithms (docs/algorithms.md B2, B4, B5, F, M)."""

from __future__ import annotations

import math

import pytest
import torch

import flsim
from flsim.algorithms.base import REGISTRY
from flsim.algorithms.client import Batch, ClientContext
from flsim.algorithms.fedsam import FedSAM, FedSAMConfig
from flsim.algorithms.fedspeed import FedSpeed, FedSpeedConfig
from flsim.algorithms.sam import sam_oracle
from flsim.tasks.base import Shard
from tests.builders import make_simulation, metrics_without_wall_time, tiny_linreg


def _pooled_gradient(task, x: torch.Tensor) -> torch.Tensor:
    """∇f for f = Σ_i (n_i/n) f_i, from the pooled least-squares data (l2 = 0)."""
    a = torch.cat([c.x for c in task.clients])
    b = torch.cat([c.y for c in task.clients])
    return a.T @ (a @ x - b) / a.shape[0]


# -- FedProx ------------------------------------------------------------------------------------
def test_fedprox_with_mu_zero_is_fedavg_bit_for_bit(tmp_path):
    optimizer = {"lr": 0.05, "local_steps": 3, "batch_size": 8, "momentum": 0.5, "clip_norm": 1.0}
    prox = flsim.run(
        tiny_linreg(algorithm={"name": "fedprox", "mu": 0.0, **optimizer}), run_dir=tmp_path / "p"
    )
    avg = flsim.run(tiny_linreg(algorithm={"name": "fedavg", **optimizer}), run_dir=tmp_path / "a")
    assert metrics_without_wall_time(prox.run_dir) == metrics_without_wall_time(avg.run_dir)


def test_fedprox_step_adds_the_proximal_gradient(tmp_path):
    """One full-batch step from x^t: y_1 = x − η (∇f_i(x) + μ (x − x)) = x − η ∇f_i(x); two steps differ."""
    raw = tiny_linreg(
        algorithm={"name": "fedprox", "mu": 0.7, "lr": 0.1, "local_steps": 2, "batch_size": "full"},
        clients_per_round=None,
        rounds=1,
    )
    simulation = make_simulation(raw, tmp_path)
    x = simulation.algorithm.global_model(simulation.server).clone()
    replies = simulation.run_round(0)
    for reply in replies:
        shard = simulation.task.clients[reply.client]

        def grad(y, shard=shard):
            return shard.x.T @ (shard.x @ y - shard.y) / len(shard)

        y1 = x - 0.1 * grad(x)
        y2 = y1 - 0.1 * (grad(y1) + 0.7 * (y1 - x))
        torch.testing.assert_close(reply.message["delta"], y2 - x, rtol=0, atol=1e-13)


# -- SAM-type gradients ---------------------------------------------------------------------------
class Quadratic:
    """f(x) = ½ xᵀAx (the batch is ignored), so the SAM gradient has a closed form."""

    dtype = torch.float64

    def __init__(self, a: torch.Tensor) -> None:
        self.a = a
        self.dim = a.shape[0]

    def loss_and_grad(self, params, x, y):
        return 0.5 * float(params @ self.a @ params), self.a @ params


def _quadratic_context(a: torch.Tensor, lr: float = 0.1) -> ClientContext:
    shard = Shard(torch.zeros(4, a.shape[0], dtype=torch.float64), torch.zeros(4, dtype=torch.float64))
    return ClientContext(0, shard, Quadratic(a), torch.Generator().manual_seed(0), None, lr, 0)


def _spd(dim: int, seed: int) -> torch.Tensor:
    m = torch.randn(dim, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return m @ m.T + torch.eye(dim, dtype=torch.float64)


@pytest.mark.parametrize("rho", [0.01, 0.3])
def test_sam_gradient_on_a_quadratic_is_the_closed_form(rho):
    """F (c): for f = ½ xᵀAx the normalised SAM gradient is A(x + ρ Ax/‖Ax‖)."""
    a = _spd(6, 1)
    x = torch.linspace(-1, 2, 6, dtype=torch.float64)
    ctx = _quadratic_context(a)
    got = sam_oracle(ctx, rho, eps=0.0)(x, Batch(ctx.shard.x, ctx.shard.y))
    ax = a @ x
    torch.testing.assert_close(got, a @ (x + rho * ax / ax.norm()), rtol=1e-14, atol=0)
    assert ctx.grad_evals == 2


def test_fedsam_local_steps_follow_the_closed_form():
    a = _spd(5, 2)
    x = torch.linspace(1, -1, 5, dtype=torch.float64)
    rho, lr = 0.2, 0.05
    algorithm = FedSAM(FedSAMConfig(name="fedsam", rho=rho, lr=lr, local_steps=3, batch_size="full"), 1, [4])
    ctx = _quadratic_context(a, lr)
    reply, _ = algorithm.client_update({"x": x}, {}, ctx)
    y = x.clone()
    for _ in range(3):
        ay = a @ y
        y = y - lr * a @ (y + rho * ay / (ay.norm() + 1e-12))
    torch.testing.assert_close(reply["delta"], y - x, rtol=0, atol=1e-14)
    assert ctx.grad_evals == 6 and ctx.steps == 3


@pytest.mark.parametrize(("alpha", "normalized"), [(0.5, False), (0.0, True), (0.75, True)])
def test_fedspeed_mixes_the_two_gradients(alpha, normalized):
    """F1: gq = (1−α) g1 + α g2 with e = ρ g1/(‖g1‖ + 1e-7), or e = ρ g1 unnormalised."""
    a = _spd(4, 3)
    x = torch.tensor([0.5, -1.0, 2.0, 0.1], dtype=torch.float64)
    rho = 0.3
    ctx = _quadratic_context(a)
    got = sam_oracle(ctx, rho, eps=1e-7, normalized=normalized, alpha=alpha)(
        x, Batch(ctx.shard.x, ctx.shard.y)
    )
    g1 = a @ x
    e = rho * g1 / (g1.norm() + 1e-7) if normalized else rho * g1
    torch.testing.assert_close(got, (1 - alpha) * g1 + alpha * (a @ (x + e)), rtol=1e-14, atol=0)
    assert ctx.grad_evals == (1 if alpha == 0 else 2)  # g2 is not computed when it is unused


def test_fedspeed_local_step_is_f2_with_clipping_before_the_decay_terms():
    """F2: y ← y − η [clip(gq + lamb (h − x), C) + lamb·y + wd·y], h updated by F3."""
    a = _spd(3, 4) * 5
    x = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    h = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
    cfg = FedSpeedConfig(
        name="fedspeed",
        lr=0.05,
        local_steps=2,
        batch_size="full",
        rho=0.1,
        lamb=0.3,
        weight_decay=0.01,
        clip_norm=2.0,
    )
    ctx = _quadratic_context(a, cfg.lr)
    reply, state = FedSpeed(cfg, 1, [4]).client_update({"x": x}, {"h": h}, ctx)
    y = x.clone()
    for _ in range(2):
        g1 = a @ y
        g = a @ (y + 0.1 * g1 / (g1.norm() + 1e-7)) + 0.3 * (h - x)
        g = g * min(1.0, 2.0 / float(g.norm()))
        y = y - 0.05 * (g + 0.3 * y + 0.01 * y)
    torch.testing.assert_close(reply["delta"], y - x, rtol=0, atol=1e-14)
    torch.testing.assert_close(state["h"], h + (y - x), rtol=0, atol=1e-14)
    assert float((a @ x).norm()) > 2.0  # the clip is active in this example


# -- FedSpeed (ρ = 0) is FedDyn ------------------------------------------------------------------
@pytest.mark.parametrize("h_average", ["all"])
def test_fedspeed_with_rho_zero_is_feddyn_iterate_for_iterate(tmp_path, h_average):
    """F (a): same minibatches, partial participation, momentum: the iterates coincide."""
    common = {"lr": 0.05, "local_steps": 4, "batch_size": 8, "momentum": 0.3, "weight_decay": 0.0}
    speed = make_simulation(
        tiny_linreg(
            algorithm={
                "name": "fedspeed",
                "rho": 0.0,
                "lamb": 0.3,
                "clip_norm": None,
                "lr_decay": 1.0,
                "h_average": h_average,
                **common,
            },
            rounds=12,
        ),
        tmp_path / "speed",
    )
    dyn = make_simulation(
        tiny_linreg(algorithm={"name": "feddyn", "alpha": 0.3, **common}, rounds=12), tmp_path / "dyn"
    )
    for round_index in range(12):
        speed.run_round(round_index)
        dyn.run_round(round_index)
        torch.testing.assert_close(speed.server["x"], dyn.server["x"], rtol=0, atol=1e-12)
        # Server correction: FedDyn's −h/α is FedSpeed's (1/N) Σ_all h_i.
        torch.testing.assert_close(
            speed.server["h_sum"] / speed.task.num_clients, -dyn.server["h"] / 0.3, rtol=0, atol=1e-12
        )
    # Client state: ∇L_i = −lamb h_i for every client that ever trained.
    speed_states, dyn_states = speed.backend.get_states(), dyn.backend.get_states()
    assert speed_states.keys() == dyn_states.keys() and speed_states
    for client, state in speed_states.items():
        torch.testing.assert_close(dyn_states[client]["grad_l"], -0.3 * state["h"], rtol=0, atol=1e-12)


def test_fedspeed_active_average_is_the_paper_form(tmp_path):
    """F4 ``active``: x^{t+1} = mean_S(y_K + h_i) with h_i after F3 (h_i⁺ = h_i + y_K − x^t)."""
    raw = tiny_linreg(
        algorithm={"name": "fedspeed", "lr": 0.05, "local_steps": 3, "batch_size": 8, "h_average": "active"},
        rounds=4,
        task={"dataset_params": {"samples_per_client": 16}},  # equal n_i: the B1 weights are 1/|S|
    )
    simulation = make_simulation(raw, tmp_path)
    for round_index in range(4):
        x = simulation.server["x"].clone()
        before = simulation.backend.get_states()
        replies = simulation.run_round(round_index)
        after = simulation.backend.get_states()
        y_plus_h = []
        for reply in replies:
            h_old = before[reply.client]["h"] if reply.client in before else torch.zeros_like(x)
            h_new = after[reply.client]["h"]
            y_k = x + (h_new - h_old)  # F3
            torch.testing.assert_close(reply.message["delta_plus_h"], y_k - x + h_new, rtol=0, atol=1e-14)
            y_plus_h.append(y_k + h_new)
        expected = sum(y_plus_h) / len(y_plus_h)
        torch.testing.assert_close(simulation.server["x"], expected, rtol=0, atol=1e-12)


# -- FedAMD ----------------------------------------------------------------------------------------
def test_fedamd_one_step_with_a_fresh_table_is_gradient_descent(tmp_path):
    """M (b): K = 1, deterministic gradients, table filled at x^0: x^1 = x^0 − η ∇f(x^0)."""
    raw = tiny_linreg(
        algorithm={"name": "fedamd", "lr": 0.3, "local_steps": 1, "batch_size": "full", "anchor_prob": 0.0},
        clients_per_round=None,
        rounds=1,
    )
    simulation = make_simulation(raw, tmp_path)
    x0 = simulation.algorithm.global_model(simulation.server).clone()
    simulation.run_round(0)
    expected = x0 - 0.3 * _pooled_gradient(simulation.task, x0)
    torch.testing.assert_close(simulation.server["x"], expected, rtol=0, atol=1e-14)
    # The init phase filled every entry with ∇f_m(x^0).
    for m, shard in enumerate(simulation.task.clients):
        torch.testing.assert_close(
            simulation.server["table"][m],
            shard.x.T @ (shard.x @ x0 - shard.y) / len(shard),
            rtol=0,
            atol=1e-14,
        )


def test_fedamd_anchor_refreshes_do_not_leak_into_the_same_rounds_miners(tmp_path):
    """M (c): miners of round t use v^t from the table as it was when round t started."""
    raw = tiny_linreg(
        algorithm={"name": "fedamd", "lr": 0.2, "local_steps": 1, "batch_size": "full", "anchor_prob": 0.5},
        clients_per_round=None,
        rounds=6,
    )
    simulation = make_simulation(raw, tmp_path)
    algorithm = simulation.algorithm
    checked = 0
    for round_index in range(6):
        roles = algorithm.roles(round_index)
        x, table = simulation.server["x"].clone(), simulation.server["table"].clone()
        weights = algorithm.table_weights()
        v_frozen = (weights[:, None] * table).sum(0)
        simulation.run_round(round_index)
        anchors = roles.nonzero().flatten().tolist()
        if round_index == 0 or not anchors or len(anchors) == algorithm.num_clients:
            continue
        # K = 1: every miner's Δ = η v^t, so x^{t+1} = x^t − η v^t with the frozen v^t.
        torch.testing.assert_close(simulation.server["x"], x - 0.2 * v_frozen, rtol=0, atol=1e-13)
        refreshed = table.clone()
        for m in anchors:
            shard = simulation.task.clients[m]
            refreshed[m] = shard.x.T @ (shard.x @ x - shard.y) / len(shard)
        torch.testing.assert_close(simulation.server["table"], refreshed, rtol=0, atol=1e-14)
        # The test can fail: a leak (using the refreshed table) would give another model.
        v_leaked = (weights[:, None] * refreshed).sum(0)
        assert float((v_leaked - v_frozen).norm()) > 1e-3
        checked += 1
    assert checked >= 2


def test_fedamd_closed_form_probability_and_periodic_roles():
    from flsim.algorithms.fedamd import FedAMD, FedAMDConfig, closed_form_anchor_prob

    r = 10.0
    assert closed_form_anchor_prob(100, 10) == pytest.approx(math.sqrt(4 * r * r + 2 * r) - 2 * r)
    algorithm = FedAMD(
        FedAMDConfig(name="fedamd", anchor_prob="closed_form"), 100, [5] * 100, clients_per_round=10
    )
    assert algorithm.anchor_probability() == pytest.approx(0.4939, abs=1e-4)
    periodic = FedAMD(FedAMDConfig(name="fedamd", period=3), 4, [5] * 4)
    assert [bool(periodic.roles(t).all()) for t in range(6)] == [False, False, True, False, False, True]
    assert not any(bool(periodic.roles(t).any()) for t in (0, 1, 3, 4))


def test_every_registered_algorithm_is_covered():
    assert set(REGISTRY) >= {
        "fedavg",
        "fedprox",
        "scaffold",
        "fedsam",
        "feddyn",
        "fedspeed",
        "fedamd",
        "fedbuff",
    }
