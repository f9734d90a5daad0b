"""``on_cross_edge`` overrides against the default path, bit for bit.

A parallel part applies a cross-actor edge event through ``on_cross_edge``; the default
copies the partner's rows into the replica and runs ``on_edge``. An override reads the
partner's rows in place and updates only the local node. Here two replicas start from the
same random state; one takes every cross event by the default path, the other by the
override, with the partner's rows as read-only views at an odd offset of a shared buffer (as
in a mailbox), interleaved with local events. The owned rows of every per-node field, and
every shared field, must agree to the last bit after every event; the partner's rows are
never written.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from flsim.algorithms.events import EventAlgorithm
from flsim.hosts.event_parts import build_event_algorithm, per_node_fields
from flsim.rng import numpy_rng
from flsim.scenario import load_scenario
from flsim.tasks import build_task
from tests.builders import make_ridge, tiny_digits


def _algorithm(name: str, batch_size: int | str) -> EventAlgorithm:
    if name == "dadao":  # needs strongly convex f_i: ridge regression, d = 5
        raw = make_ridge({"name": name, "batch_size": batch_size})
    else:  # a neural network: an MLP on digits, d = 1,210
        raw = tiny_digits(
            algorithm={"name": name, "lr": 0.1, "batch_size": batch_size},
            topology={"kind": "ring"},
            clients_per_round=None,
            budget={"time": 3.0},
            eval={"every_time": 1.0},
        )
        del raw["rounds"]
    scenario = load_scenario(raw)
    return build_event_algorithm(scenario, build_task(scenario.task, scenario.seed))


def _randomise(algorithm: EventAlgorithm, rng: np.random.Generator) -> None:
    """Every per-node float field random (clocks in [0, 1)); counters random too."""
    for name in per_node_fields(algorithm):
        array = getattr(algorithm, name)
        if name == "last_event":
            array[...] = rng.random(array.shape)
        elif array.dtype.kind == "f":
            array[...] = rng.standard_normal(array.shape)
        else:
            array[...] = rng.integers(0, 50, array.shape)


def _mailbox_rows(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Read-only copies of ``rows`` in one byte buffer, each at an offset that is not a
    multiple of 16 (a view into shared memory need not be aligned as numpy allocates)."""
    sizes = [row.nbytes for row in rows.values()]
    buffer = bytearray(sum(sizes) + 8 * (len(sizes) + 1))
    out, offset = {}, 8
    for (name, row), size in zip(rows.items(), sizes, strict=True):
        view = np.frombuffer(buffer, dtype=row.dtype, count=row.size, offset=offset).reshape(row.shape)
        view[...] = row
        view.flags.writeable = False
        out[name] = view
        offset += size + 8
    return out


def _partner_rows(algorithm: EventAlgorithm, node: int, rng: np.random.Generator, t: float) -> dict:
    """Rows of ``node`` as its owner would export them: fresh random values (not the stale
    replica's), the clock (if any) before ``t``."""
    rows = {}
    for name in algorithm.edge_fields or per_node_fields(algorithm):
        row = np.array(getattr(algorithm, name)[node], copy=True)
        row[...] = rng.uniform(0.0, t) if name == "last_event" else rng.standard_normal(row.shape)
        rows[name] = row
    return rows


def _assert_owned_equal(default: EventAlgorithm, override: EventAlgorithm, owned: list[int]) -> None:
    per_node = per_node_fields(default)
    for name in default.state_fields:
        expected, actual = getattr(default, name), getattr(override, name)
        if name in per_node:
            expected, actual = expected[owned], actual[owned]
        assert expected.tobytes() == actual.tobytes(), name


@pytest.mark.parametrize("batch_size", ["full", 2])
@pytest.mark.parametrize("name", ["async_gossip_sgd", "dadao"])
def test_cross_edge_override_matches_the_default_path_bit_for_bit(name, batch_size):
    default = _algorithm(name, batch_size)
    assert type(default).on_cross_edge is not EventAlgorithm.on_cross_edge
    rng = numpy_rng(0, "test.cross_edges")
    _randomise(default, rng)
    override = copy.deepcopy(default)
    n = default.num_nodes
    owned = sorted(int(v) for v in rng.choice(n, size=n // 2, replace=False))
    others = [v for v in range(n) if v not in owned]
    t, crossed = 1.0, 0
    for _ in range(300):
        t += float(rng.exponential(0.1))
        local, remote = int(rng.choice(owned)), int(rng.choice(others))
        if rng.random() < 0.25:  # a local event between owned nodes keeps both replicas in step
            i, j = (int(v) for v in rng.choice(owned, size=2, replace=False))
            default.on_edge(i, j, t)
            override.on_edge(i, j, t)
            continue
        i, j = (local, remote) if rng.random() < 0.5 else (remote, local)
        rows = _mailbox_rows(_partner_rows(default, remote, rng, t))
        snapshot = {key: value.copy() for key, value in rows.items()}
        EventAlgorithm.on_cross_edge(default, i, j, t, local, rows)
        override.on_cross_edge(i, j, t, local, rows)
        _assert_owned_equal(default, override, owned)
        assert all(rows[key].tobytes() == snapshot[key].tobytes() for key in rows)
        crossed += 1
    assert crossed > 150
    # The override really took the short path: the partner's replica rows were not written.
    field = default.edge_fields[0]
    assert any(getattr(default, field)[v].tobytes() != getattr(override, field)[v].tobytes() for v in others)


def test_default_cross_edge_is_the_partner_rows_copied_in_then_on_edge():
    """The default (what algorithms without an override get) changes both endpoints exactly
    as ``on_edge`` on a replica holding the partner's rows."""
    algorithm = _algorithm("dadao", 2)
    rng = numpy_rng(1, "test.cross_edges")
    _randomise(algorithm, rng)
    reference = copy.deepcopy(algorithm)
    rows = _partner_rows(algorithm, 3, rng, 2.0)
    for key, value in rows.items():
        getattr(reference, key)[3] = value
    reference.on_edge(2, 3, 2.0)
    EventAlgorithm.on_cross_edge(algorithm, 2, 3, 2.0, 2, _mailbox_rows(rows))
    for key in algorithm.state_fields:
        assert getattr(algorithm, key).tobytes() == getattr(reference, key).tobytes(), key
    assert algorithm.last_event[3] == 2.0
