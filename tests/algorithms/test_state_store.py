"""The client-state store: spill to disk beyond a memory budget, exactly and transparently."""

from __future__ import annotations

import pytest
import torch

import flsim
from flsim.hosts.state_store import ClientStateStore, state_bytes
from tests.builders import make_simulation, metrics_without_wall_time, tiny_linreg


def _state(client: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(client)
    return {
        "c": torch.randn(7, dtype=torch.float64, generator=g),
        "w": torch.randn(3, 5, generator=g),  # float32, 2-D
        "count": torch.tensor(client, dtype=torch.int64),  # 0-d
        "mask": torch.rand(5, generator=g) > 0.5,
        "half": torch.randn(3, generator=g).to(torch.bfloat16),  # no NumPy dtype
        "empty": torch.zeros(0),
    }


def _assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for key in want:
        assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape, key
        assert torch.equal(got[key], want[key]), key


def test_spilled_states_come_back_exactly(tmp_path):
    one = state_bytes(_state(0))
    store = ClientStateStore(
        lambda c: {"init": torch.zeros(1)}, memory_budget_bytes=3 * one, spill_dir=tmp_path
    )
    for client in range(20):
        store.put(client, _state(client))
        assert store.hot_bytes <= 3 * one
    assert store.num_spilled == 17 and len(store) == 20
    for client in range(20):
        _assert_same(store.get(client), _state(client))
    _assert_same(store.get(99), {"init": torch.zeros(1)})  # never put: the initial state
    # Overwrite a spilled client; the old file is gone, the new value is returned.
    store.put(0, {"c": torch.ones(2)})
    _assert_same(store.get(0), {"c": torch.ones(2)})
    assert len(list(tmp_path.glob("*/*.bin"))) == store.num_spilled


def test_the_hot_cache_is_least_recently_used(tmp_path):
    one = state_bytes(_state(0))
    store = ClientStateStore(lambda c: {}, memory_budget_bytes=2 * one, spill_dir=tmp_path)
    store.put(0, _state(0))
    store.put(1, _state(1))
    store.get(0)  # 0 is now the most recently used
    store.put(2, _state(2))  # evicts 1, not 0
    assert store.num_spilled == 1
    before = store.loads
    store.get(0)
    assert store.loads == before  # served from memory
    store.get(1)
    assert store.loads == before + 1  # read back from disk


def test_a_zero_budget_spills_everything_and_a_none_budget_nothing(tmp_path):
    cold = ClientStateStore(lambda c: {}, memory_budget_bytes=0, spill_dir=tmp_path)
    warm = ClientStateStore(lambda c: {})
    for client in range(5):
        cold.put(client, _state(client))
        warm.put(client, _state(client))
    assert (cold.num_spilled, cold.hot_bytes) == (5, 0)
    assert warm.num_spilled == 0
    for client in range(5):
        _assert_same(cold.get(client), warm.get(client))


def test_export_is_a_snapshot_and_import_restores_it(tmp_path):
    store = ClientStateStore(lambda c: {}, memory_budget_bytes=0, spill_dir=tmp_path)
    for client in range(4):
        store.put(client, _state(client))
    snapshot = store.export()
    for client in range(4):  # the live store moves on; the snapshot must not
        store.put(client, {"c": torch.full((2,), float(client))})
    for client in range(4):
        _assert_same(snapshot[client], _state(client))
    store.load(snapshot)
    for client in range(4):
        _assert_same(store.get(client), _state(client))


def test_states_that_are_not_tensors_fall_back_to_pickling(tmp_path):
    store = ClientStateStore(lambda c: {}, memory_budget_bytes=0, spill_dir=tmp_path)
    store.put(3, {"t": torch.arange(4), "meta": 2.5})  # type: ignore[dict-item]
    got = store.get(3)
    assert torch.equal(got["t"], torch.arange(4)) and got["meta"] == 2.5


def test_close_removes_the_spill_directory(tmp_path):
    store = ClientStateStore(lambda c: {}, memory_budget_bytes=0, spill_dir=tmp_path)
    store.put(0, _state(0))
    (spill,) = list(tmp_path.iterdir())
    store.close()
    assert not spill.exists()


def test_handed_out_states_are_not_aliased_with_the_store(tmp_path):
    store = ClientStateStore(lambda c: {}, memory_budget_bytes=0, spill_dir=tmp_path)
    store.put(0, {"c": torch.zeros(3)})
    store.get(0)["c"].add_(1.0)  # a misbehaving caller
    assert torch.equal(store.get(0)["c"], torch.zeros(3))


@pytest.mark.parametrize("name", ["scaffold", "fedspeed"])
def test_a_run_with_spilled_client_state_is_bit_identical(tmp_path, name):
    from flsim.algorithms import REGISTRY

    raw = REGISTRY[name].example_scenario(tiny_linreg(rounds=6, checkpoint={"every": 2}))
    spilled = raw | {"backend": {"state_memory_mb": 0.0001, "state_dir": str(tmp_path / "spill")}}
    a = flsim.run(raw, run_dir=tmp_path / "memory")
    b = flsim.run(spilled, run_dir=tmp_path / "disk")
    assert metrics_without_wall_time(a.run_dir) == metrics_without_wall_time(b.run_dir)
    assert not any((tmp_path / "spill").iterdir())  # the backend's shutdown cleaned up


def test_the_host_spills_beyond_its_budget(tmp_path):
    raw = tiny_linreg(
        algorithm={"name": "scaffold", "lr": 0.05, "local_steps": 2},
        clients_per_round=None,
        backend={"state_memory_mb": 100 / 2**20},  # 100 bytes: two c_i of 40 bytes
    )
    simulation = make_simulation(raw, tmp_path)
    simulation.run_round(0)
    store = simulation.backend.host.store
    assert len(store) == 6 and store.num_spilled == 4 and store.hot_bytes == 80
