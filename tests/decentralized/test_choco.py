"""CHOCO-Gossip on compressed gossip (Koloskova, Stich and Jaggi, ICML 2019, Alg. 1).

Properties checked: one step equals the recursion computed independently in numpy; the
average is preserved exactly and the nodes reach it (uncorrected compressed gossip does
not); CHOCO-SGD lands where exact D-PSGD does; x̂ survives a crash and resume; bad
configurations are rejected naming the key.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import flsim
from flsim.backends.local import LocalNodeBackend
from flsim.config.errors import ConfigError, ConfigErrors
from flsim.engine.gossip import GossipSimulation, mixing_rows
from flsim.hosts.node_host import HAT_KEY
from flsim.results.writer import RunWriter
from flsim.scenario import load_scenario
from tests.builders import metrics_without_wall_time, run_until_crash, tiny_linreg

N, DIM, GAMMA = 6, 5, 0.4


def _ring_weights(n: int) -> np.ndarray:
    w = np.zeros((n, n))
    for i in range(n):
        w[i, i] = w[i, (i + 1) % n] = w[i, (i - 1) % n] = 1 / 3
    return w


def _scenario(compression: dict, **updates) -> dict:
    raw = tiny_linreg(
        algorithm={"name": "dpsgd", "lr": 0.05, "batch_size": "full"},
        clients_per_round=None,
        topology={"kind": "ring"},
        compression=compression,
    )
    raw.update(updates)
    return raw


def _choco(k: int = 1, gamma: float = GAMMA) -> dict:
    return {"uplink": {"kind": "topk", "k": k}, "choco": {"consensus_lr": gamma}}


def _gossip_backend(compression: dict) -> LocalNodeBackend:
    backend = LocalNodeBackend(load_scenario(_scenario(compression)))
    backend.start()
    return backend


def _random_vectors(seed: int = 0) -> dict[int, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {i: torch.randn(DIM, dtype=torch.float64, generator=generator) for i in range(N)}


def _top1(v: np.ndarray) -> np.ndarray:
    out = np.zeros_like(v)
    index = int(np.argmax(np.abs(v)))
    out[index] = v[index]
    return out


def test_choco_steps_equal_the_recursion_computed_in_numpy():
    backend = _gossip_backend(_choco())
    weights = _ring_weights(N)
    rows = mixing_rows(weights)
    z = _random_vectors()
    x = np.stack([z[i].numpy() for i in range(N)])
    hat = np.zeros_like(x)
    for step in range(5):
        z = backend.mix(rows, z, stream=step)
        hat = hat + np.stack([_top1(x[i] - hat[i]) for i in range(N)])  # q_i = C(x_i − x̂_i)
        x = x + GAMMA * (weights @ hat - hat)  # x_i += γ Σ_j W_ij (x̂_j − x̂_i)
        np.testing.assert_allclose(np.stack([z[i].numpy() for i in range(N)]), x, rtol=0, atol=1e-13)


def test_choco_keeps_the_average_and_reaches_it_where_plain_compressed_gossip_does_not():
    rows = mixing_rows(_ring_weights(N))
    start = _random_vectors(1)
    mean = torch.stack(list(start.values())).mean(dim=0)

    def after(compression: dict, steps: int) -> torch.Tensor:
        backend, z = _gossip_backend(compression), dict(start)
        for step in range(steps):
            z = backend.mix(rows, z, stream=step)
        return torch.stack([z[i] for i in range(N)])

    choco = after(_choco(k=1, gamma=0.3), 600)
    torch.testing.assert_close(choco.mean(dim=0), mean, rtol=0, atol=1e-12)  # W doubly stochastic
    assert float((choco - mean).abs().max()) < 1e-8
    plain = after({"uplink": {"kind": "topk", "k": 1}}, 600)
    assert float((plain - mean).abs().max()) > 1e-2  # the uncorrected messages lose the average


@pytest.mark.slow
def test_choco_sgd_closes_in_on_the_optimum_as_the_step_shrinks_and_plain_compression_does_not(tmp_path):
    """With a constant step η, D-PSGD and CHOCO-SGD settle in a neighbourhood of x* that
    shrinks with η; uncorrected Top-1 gossip is biased and stays away whatever η is."""

    def final_gap(compression: dict, lr: float) -> float:
        rounds = int(75 / lr)  # the same horizon η·T in both runs
        raw = _scenario(compression, rounds=rounds, eval={"every": rounds, "per_node": False})
        raw["algorithm"]["lr"] = lr
        run_dir = tmp_path / f"{len(compression)}-{lr}"
        return flsim.run(raw, run_dir=run_dir).final["optimality_gap"]

    plain_compression = {"uplink": {"kind": "topk", "k": 1}}
    choco = [final_gap(_choco(k=1, gamma=0.3), lr) for lr in (0.05, 0.0125)]
    plain = [final_gap(plain_compression, lr) for lr in (0.05, 0.0125)]
    assert choco[1] < 0.3 * choco[0]
    assert plain[1] > 0.5 * plain[0]
    assert plain[1] > 10 * choco[1]


def test_choco_copies_are_checkpointed_for_a_bit_identical_resume(tmp_path):
    raw = _scenario(_choco(), rounds=8, checkpoint={"every": 3}, eval={"every": 1})
    full = flsim.run(raw, run_dir=tmp_path / "full")
    run_until_crash(raw, tmp_path / "crashed", GossipSimulation, 5)
    resumed = flsim.resume(tmp_path / "crashed")
    assert metrics_without_wall_time(resumed.run_dir) == metrics_without_wall_time(full.run_dir)
    checkpoint = RunWriter(resumed.run_dir).load_checkpoint()
    assert all(HAT_KEY in state for state in checkpoint["nodes"].values())


@pytest.mark.parametrize(
    ("compression", "algorithm", "key"),
    [
        ({"choco": {"consensus_lr": 0.5}}, "dpsgd", "compression.choco"),  # nothing to correct
        (
            {"uplink": {"kind": "qsgd", "levels": 4}, "choco": {"consensus_lr": 0.5}},
            "dpsgd",
            "compression.choco",
        ),
        ({"uplink": {"kind": "topk", "k": 1}, "choco": {}}, "dpsgd", "compression.choco.consensus_lr"),
        (
            {"uplink": {"kind": "topk", "k": 1}, "choco": {"consensus_lr": 1.5}},
            "dpsgd",
            "compression.choco.consensus_lr",
        ),
        ({"uplink": {"kind": "topk", "k": 1}, "choco": {"consensus_lr": 0.5}}, "fedavg", "compression.choco"),
    ],
    ids=["no-uplink", "unbiased-uplink", "no-gamma", "gamma-above-one", "not-gossip"],
)
def test_bad_choco_configurations_name_the_key(compression, algorithm, key):
    raw = _scenario(compression)
    if algorithm != "dpsgd":
        raw = tiny_linreg(compression=compression)
    with pytest.raises((ConfigError, ConfigErrors)) as caught:
        load_scenario(raw)
    assert key in str(caught.value)
