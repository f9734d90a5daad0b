"""Drop-Muon clients upload only the layers they trained; the server averages each layer over its senders."""

from __future__ import annotations

import torch

from flsim.optim.flat import layout_of
from flsim.rng import torch_rng
from tests.builders import make_simulation, tiny_digits

D_MUON = {"name": "drop_muon", "state": "persist"}


def _expected_cut(seed: int, client: int, round_index: int, layers: int) -> int:
    """The documented stream: keyed by the client's round stream, purpose ``client_optimizer.cut``."""
    batches = torch_rng(seed, "client", client, round_index)
    generator = torch_rng(batches.initial_seed(), "client_optimizer.cut", client)
    return int(torch.randint(layers, (1,), generator=generator))


def test_uploads_are_the_trained_tail_and_the_server_averages_each_layer_over_its_senders(tmp_path):
    raw = tiny_digits(
        algorithm={
            "name": "fedavg",
            "lr": 0.02,
            "local_steps": 2,
            "batch_size": 16,
            "client_optimizer": D_MUON,
        },
        rounds=4,
    )
    simulation = make_simulation(raw, tmp_path)
    layout = layout_of(simulation.task.objective)
    assert layout.num_layers == 2  # 64 → 16 → 10
    size = torch.empty(0, dtype=simulation.task.objective.dtype).element_size()
    cuts_seen: set[int] = set()
    for round_index in range(4):
        x = simulation.server["x"].clone()
        replies = simulation.run_round(round_index)
        expected = torch.zeros_like(x)
        for layer in range(layout.num_layers):
            start = layout.layer_offset(layer)
            end = layout.dim if layer + 1 == layout.num_layers else layout.layer_offset(layer + 1)
            senders = []
            for reply in replies:
                cut = _expected_cut(raw["seed"], reply.client, round_index, layout.num_layers)
                offset = layout.layer_offset(cut)
                cuts_seen.add(cut)
                # Exactly the tail from layer s is sent, and bytes_up counts exactly it.
                assert reply.message["delta"].numel() == layout.dim - offset
                assert reply.bytes_up == (layout.dim - offset) * size
                if cut <= layer:
                    senders.append((reply, offset))
            total = sum(reply.num_samples for reply, _ in senders)
            for reply, offset in senders:
                part = reply.message["delta"][start - offset : end - offset]
                expected[start:end] += (reply.num_samples / total) * part
        torch.testing.assert_close(simulation.server["x"] - x, expected, rtol=1e-5, atol=1e-7)
    assert cuts_seen == {0, 1}  # both kinds of upload occurred


def test_frozen_layers_keep_their_weights_and_momentum():
    """A client whose cut is above layer 0 returns the same layer-0 momentum it was given."""
    from flsim.algorithms.client import ClientContext
    from flsim.algorithms.client_optimizers import STATE_PREFIX, run_with_optimizer_state
    from flsim.algorithms.fedavg import FedAvg
    from flsim.scenario import load_scenario
    from flsim.tasks import build_task

    raw = tiny_digits(algorithm={"name": "fedavg", "lr": 0.02, "local_steps": 2, "client_optimizer": D_MUON})
    scenario = load_scenario(raw)
    task = build_task(scenario.task, scenario.seed)
    cfg = FedAvg.Config.model_validate(raw["algorithm"])
    algorithm = FedAvg(cfg, task.num_clients, task.client_sizes())
    layout = layout_of(task.objective)
    x = task.objective.init_params(torch.Generator().manual_seed(0))
    state: dict[str, torch.Tensor] = {}
    frozen_rounds = 0
    for round_index in range(8):
        ctx = ClientContext(
            0, task.clients[0], task.objective, torch_rng(0, "client", 0, round_index), 32, 0.02, round_index
        )
        before = state.get(STATE_PREFIX + "momentum_buffer")
        out, state = run_with_optimizer_state(algorithm.client_update, {"x": x}, state, ctx)
        cut = _expected_cut(0, 0, round_index, 2)
        head = layout.layer_offset(1)
        assert out["delta"].numel() == layout.dim - layout.layer_offset(cut)
        if cut == 1 and before is not None:
            frozen_rounds += 1
            assert torch.equal(state[STATE_PREFIX + "momentum_buffer"][:head], before[:head])
            assert not torch.equal(state[STATE_PREFIX + "momentum_buffer"][head:], before[head:])
    assert frozen_rounds > 0


def test_each_stretch_keeps_the_rounds_total_weight():
    """Tails of lengths 6, 4 and 1 of a 6-vector: coordinates 0-1 come from client 0 alone, 2-4
    from clients 0 and 1, 5 from all three; each stretch rescales its senders' weights to the
    round's total, with FedBuff's per-reply factor on top, and importance weights (sum ≠ 1) keep
    their total."""
    from flsim.algorithms.base import Reply
    from flsim.algorithms.fedavg import FedAvg

    cfg = FedAvg.Config.model_validate({"name": "fedavg", "weighting": "uniform"})
    algorithm = FedAvg(cfg, 3, [10, 20, 30])
    tails = [torch.arange(1.0, 7.0), 10 * torch.ones(4), torch.tensor([100.0])]
    replies = [Reply(i, {"delta": t}, 10, 1, 1, 4 * t.numel()) for i, t in enumerate(tails)]
    like = torch.zeros(6)
    factors = {0: 1.0, 1: 0.5, 2: 0.25}
    out = algorithm.weighted_mean(replies, "delta", like=like, factor=lambda r: factors[r.client])
    w = [1 / 3, 1 / 3, 1 / 3]
    expected = torch.tensor(
        [
            1.0 * 1.0,
            2.0 * 1.0,
            (3.0 * 1.0 + 10 * 0.5) * (w[0] / (w[0] + w[1])),
            (4.0 * 1.0 + 10 * 0.5) * (w[0] / (w[0] + w[1])),
            (5.0 * 1.0 + 10 * 0.5) * (w[0] / (w[0] + w[1])),
            (6.0 * 1.0 + 10 * 0.5 + 100 * 0.25) / 3,
        ]
    )
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=0)
    for reply, weight in zip(replies, [0.6, 0.3, 0.3], strict=True):
        reply.weight = weight  # a client selection's importance weights: total 1.2
    out = algorithm.weighted_mean(replies, "delta", like=like)
    head = 1.2 * torch.arange(1.0, 3.0)
    middle = 1.2 * (0.6 * torch.arange(3.0, 6.0) + 0.3 * 10) / 0.9
    last = torch.tensor([0.6 * 6.0 + 0.3 * 10 + 0.3 * 100])
    torch.testing.assert_close(out, torch.cat([head, middle, last]), rtol=1e-6, atol=0)
