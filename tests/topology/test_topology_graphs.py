"""Builders, loaders and validation of communication graphs (flsim.topology.graphs)."""

from __future__ import annotations

import json

import networkx as nx
import pytest

from flsim.config.errors import ConfigError
from flsim.topology.graph_files import load_graph, save_graph
from flsim.topology.graph_spec import graph_from_spec, parse_spec, parse_value
from flsim.topology.graphs import BUILDERS, TOPOLOGIES_DIR, build_graph, validate_graph

CASES = {
    "ring": ({"n": 7}, 7),
    "path": ({"n": 5}, 5),
    "star": ({"n": 6}, 6),
    "complete": ({"n": 5}, 5),
    "grid": ({"rows": 3, "cols": 4}, 12),
    "torus": ({"rows": 3, "cols": 4}, 12),
    "exponential": ({"n": 12}, 12),
    "barbell": ({"m1": 4, "m2": 2}, 10),
    "lollipop": ({"m": 4, "k": 3}, 7),
    "erdos_renyi": ({"n": 15, "p": 0.3}, 15),
    "random_regular": ({"n": 12, "d": 3}, 12),
    "geometric": ({"n": 15, "radius": 0.5}, 15),
    "small_world": ({"n": 14, "k": 4, "p": 0.3}, 14),
}


def test_every_builder_is_covered():
    assert set(CASES) == set(BUILDERS)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_builders_give_connected_graphs_labelled_0_to_n(kind):
    params, n = CASES[kind]
    graph = build_graph(kind, params, seed=3)
    assert graph.number_of_nodes() == n
    assert list(graph.nodes) == list(range(n))
    assert nx.is_connected(graph)
    assert nx.number_of_selfloops(graph) == 0


@pytest.mark.parametrize("kind", ["erdos_renyi", "random_regular", "geometric", "small_world"])
def test_random_builders_are_deterministic_in_seed_and_round(kind):
    params, _ = CASES[kind]
    same = [set(build_graph(kind, params, seed=5, round_index=2).edges) for _ in range(2)]
    assert same[0] == same[1]
    others = {
        frozenset(build_graph(kind, params, seed=s, round_index=r).edges) for s, r in [(5, 2), (6, 2), (5, 3)]
    }
    assert len(others) > 1


def test_a_seed_in_params_overrides_the_scenario_seed():
    params = {"n": 12, "p": 0.4, "seed": 9}
    assert set(build_graph("erdos_renyi", params, seed=1).edges) == set(
        build_graph("erdos_renyi", params, seed=2).edges
    )


def test_exponential_graph_links_powers_of_two():
    graph = build_graph("exponential", {"n": 16})
    assert sorted(graph.neighbors(0)) == [1, 2, 4, 8, 12, 14, 15]


def test_torus_is_four_regular_and_grid_is_row_major():
    assert {d for _, d in build_graph("torus", {"rows": 4, "cols": 5}).degree()} == {4}
    grid = build_graph("grid", {"rows": 2, "cols": 3})
    assert grid.has_edge(0, 1) and grid.has_edge(0, 3) and not grid.has_edge(2, 3)


def test_num_clients_fills_in_n_and_is_checked():
    assert build_graph("ring", {}, 9).number_of_nodes() == 9
    with pytest.raises(ConfigError) as info:
        build_graph("ring", {"n": 8}, 9)
    assert info.value.key == "topology.params.n" and "num_clients" in info.value.reason
    with pytest.raises(ConfigError) as info:
        build_graph("torus", {"rows": 3, "cols": 3}, 10)
    assert info.value.key == "topology.params"


def test_bad_params_name_the_dotted_key():
    with pytest.raises(ConfigError) as info:
        build_graph("erdos_renyi", {"n": 10, "p": 1.5})
    assert info.value.key == "topology.params.p"
    with pytest.raises(ConfigError) as info:
        build_graph("ring", {"n": 5, "q": 1})
    assert info.value.key == "topology.params.q"
    with pytest.raises(ConfigError) as info:
        build_graph("random_regular", {"n": 5, "d": 3})
    assert info.value.key == "topology.params.d"
    with pytest.raises(ConfigError) as info:
        build_graph("hypercube", {"n": 8})
    assert info.value.key == "topology.kind"
    with pytest.raises(ConfigError) as info:
        build_graph("grid", {"rows": 3})
    assert info.value.key == "topology.params.cols"


def test_hopeless_random_params_fail_after_bounded_redraws():
    with pytest.raises(ConfigError) as info:
        build_graph("erdos_renyi", {"n": 30, "p": 0.01, "max_tries": 5})
    assert info.value.key == "topology.params.p" and "5 draws" in info.value.reason


def test_validation_rejects_disconnected_self_loops_and_wrong_size():
    disconnected = nx.Graph([(0, 1), (2, 3)])
    with pytest.raises(ConfigError, match="disconnected") as info:
        validate_graph(disconnected, key="topology.file")
    assert info.value.key == "topology.file"
    looped = nx.Graph([(0, 1), (1, 2), (2, 2)])
    with pytest.raises(ConfigError, match="self-loop"):
        validate_graph(looped)
    with pytest.raises(ConfigError, match="num_clients"):
        validate_graph(nx.path_graph(4), 5)


def test_validation_relabels_arbitrary_labels():
    graph = validate_graph(nx.Graph([("b", "a"), ("c", "b")]))
    assert list(graph.nodes) == [0, 1, 2] and set(graph.edges) == {(0, 1), (1, 2)}
    graph = validate_graph(nx.Graph([(10, 3), (3, 7)]))
    assert set(graph.edges) == {(0, 2), (0, 1)}


@pytest.mark.parametrize("suffix", [".edgelist", ".graphml", ".json", ".yaml"])
def test_loaders_round_trip(tmp_path, suffix):
    graph = build_graph("erdos_renyi", {"n": 12, "p": 0.4}, seed=4)
    path = save_graph(graph, tmp_path / f"g{suffix}")
    loaded = load_graph(path, 12)
    assert set(loaded.edges) == set(graph.edges) and loaded.number_of_nodes() == 12


def test_json_with_links_key_and_string_labels(tmp_path):
    data = {
        "directed": False,
        "multigraph": False,
        "graph": {},
        "nodes": [{"id": "x"}, {"id": "y"}, {"id": "z"}],
        "links": [{"source": "x", "target": "y"}, {"source": "y", "target": "z"}],
    }
    (tmp_path / "g.json").write_text(json.dumps(data))
    assert set(load_graph(tmp_path / "g.json").edges) == {(0, 1), (1, 2)}


def test_file_errors_name_the_key(tmp_path):
    (tmp_path / "split.edgelist").write_text("0 1\n2 3\n")
    with pytest.raises(ConfigError, match="disconnected") as info:
        load_graph(tmp_path / "split.edgelist")
    assert info.value.key == "topology.file"
    (tmp_path / "loop.edgelist").write_text("0 1\n1 1\n")
    with pytest.raises(ConfigError, match="self-loop"):
        load_graph(tmp_path / "loop.edgelist")
    with pytest.raises(ConfigError, match="not found"):
        load_graph(tmp_path / "missing.graphml")
    (tmp_path / "bad.yaml").write_text("kind: ring\nparams: {n: 2}\n")
    with pytest.raises(ConfigError) as info:
        load_graph(tmp_path / "bad.yaml")
    assert info.value.key.endswith(".params.n")
    (tmp_path / "bad.graphml").write_text("<graphml><not closed")
    with pytest.raises(ConfigError, match="cannot read"):
        load_graph(tmp_path / "bad.graphml")


def test_named_topology_files_load_with_their_size():
    expected = {
        "ring_16": 16,
        "torus_8x8": 64,
        "exponential_32": 32,
        "erdos_renyi_20": 20,
        "barbell_20": 20,
        "star_8": 8,
    }
    for name, n in expected.items():
        assert (TOPOLOGIES_DIR / f"{name}.yaml").is_file()
        assert load_graph(name, n).number_of_nodes() == n
    assert load_graph(TOPOLOGIES_DIR / "ring_16.yaml").number_of_edges() == 16


def test_spec_strings():
    assert parse_spec("torus:rows=8,cols=8") == ("torus", {"rows": 8, "cols": 8})
    assert parse_spec("erdos_renyi:n=10,p=0.5,seed=2") == ("erdos_renyi", {"n": 10, "p": 0.5, "seed": 2})
    assert [parse_value(v) for v in ("3", "0.5", "true", "False", "abc")] == [3, 0.5, True, False, "abc"]
    assert graph_from_spec("ring_16").number_of_nodes() == 16
    with pytest.raises(ConfigError) as info:
        parse_spec("nonsense:a=1")
    assert info.value.key == "spec"
    with pytest.raises(ConfigError):
        parse_spec("ring:n")
