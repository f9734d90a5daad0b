"""Topology files: edge lists, node-link JSON, GraphML and flsim's YAML, loaded and saved.

Every loaded graph goes through :func:`~flsim.topology.graphs.validate_graph`, like a built
one, so consumers see the same simple, connected, ``0..n-1``-labelled graphs either way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import ParseError as XmlParseError

import networkx as nx
import yaml

from flsim.config.errors import ConfigError
from flsim.config.schema import MAX_CLIENTS
from flsim.config.yamlsafe import load_file
from flsim.topology.graphs import (
    EDGE_LIST_SUFFIXES,
    GRAPHML_SUFFIXES,
    JSON_SUFFIXES,
    MAX_TOPOLOGY_BYTES,
    TOPOLOGIES_DIR,
    YAML_SUFFIXES,
    build_graph,
    edge_list,
    validate_graph,
)


def load_graph(
    path: str | Path,
    num_nodes: int | None = None,
    seed: int = 0,
    *,
    round_index: int = 0,
    key: str = "topology.file",
) -> nx.Graph:
    """Read a topology file: edge list, GraphML, JSON node-link, or a flsim YAML file.

    A YAML file holds either ``kind`` + ``params`` (built like a scenario's ``topology``) or
    ``edges: [[i, j], ...]`` with an optional ``num_nodes``. A bare name such as ``ring_16``
    is looked up in the repository's ``topologies/`` folder.
    """
    file = resolve_topology_path(path, key=key)
    suffix = file.suffix.lower()
    if file.stat().st_size > MAX_TOPOLOGY_BYTES:
        raise ConfigError(key, str(path), f"topology file is larger than {MAX_TOPOLOGY_BYTES} bytes")
    try:
        if suffix in YAML_SUFFIXES:
            return _load_yaml(file, seed=seed, round_index=round_index, num_nodes=num_nodes, key=key)
        if suffix in GRAPHML_SUFFIXES:
            graph = nx.read_graphml(file)
        elif suffix in JSON_SUFFIXES:
            graph = _load_node_link(file)
        elif suffix in EDGE_LIST_SUFFIXES or suffix == "":
            graph = _load_edge_list(file)
        else:
            raise ConfigError(key, str(path), f"unknown topology file type {suffix!r}")
    except ConfigError:
        raise
    except (
        OSError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        RecursionError,
        nx.NetworkXError,
        XmlParseError,
    ) as err:
        # The reason names a line or a field, never the file's text: a wrong path may point
        # at a file whose contents must not end up in a terminal or a log.
        reason = f"{type(err).__name__}: {err}" if isinstance(err, KeyError) else str(err)
        raise ConfigError(key, str(path), f"cannot read topology file: {reason}") from None
    return validate_graph(graph, num_nodes, key=key)


def resolve_topology_path(path: str | Path, *, key: str = "topology.file") -> Path:
    """The file itself if it exists, else ``topologies/<name>[.yaml]`` for a bare name."""
    file = Path(path)
    if file.is_file():
        return file
    for candidate in (TOPOLOGIES_DIR / file, TOPOLOGIES_DIR / f"{file}.yaml", TOPOLOGIES_DIR / f"{file}.yml"):
        if not file.is_absolute() and len(file.parts) == 1 and candidate.is_file():
            return candidate
    raise ConfigError(key, str(path), "topology file not found")


def _load_edge_list(file: Path) -> nx.Graph:
    graph = nx.Graph()
    for number, raw in enumerate(file.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].replace(",", " ").strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) < 2:
            raise ValueError(f"line {number}: expected two node labels 'u v'")
        graph.add_edge(_label(fields[0]), _label(fields[1]))
    return graph


def _label(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text


def _load_node_link(file: Path) -> nx.Graph:
    data = json.loads(file.read_text())
    if not isinstance(data, dict):
        raise ValueError("JSON topology must be a node-link object")
    edges_key = "edges" if "edges" in data else "links"
    graph = nx.node_link_graph(data, edges=edges_key)
    return graph


def _load_yaml(file: Path, *, seed: int, round_index: int, num_nodes: int | None, key: str) -> nx.Graph:
    data = load_file(file, key)
    if not isinstance(data, dict):
        raise ConfigError(key, str(file), "YAML topology must be a mapping with 'kind'+'params' or 'edges'")
    allowed = {"kind", "params", "edges", "num_nodes", "name", "description"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(
            f"{key}:{unknown[0]}", data[unknown[0]], f"unknown key in {file.name}; allowed {sorted(allowed)}"
        )
    if "kind" in data:
        if "edges" in data:
            raise ConfigError(key, str(file), "give either 'kind' or 'edges', not both")
        params = data.get("params") or {}
        if not isinstance(params, dict):
            raise ConfigError(f"{key}:params", params, "must be a mapping")
        return build_graph(
            data["kind"],
            params,
            seed=seed,
            round_index=round_index,
            num_nodes=num_nodes,
            key=f"{key}:{file.name}",
        )
    if "edges" not in data:
        raise ConfigError(key, str(file), "YAML topology needs 'kind' (+ 'params') or 'edges'")
    graph = nx.Graph()
    if data.get("num_nodes") is not None:
        graph.add_nodes_from(range(_file_num_nodes(data["num_nodes"], num_nodes, f"{key}:num_nodes")))
    for edge in data["edges"] or []:
        if not isinstance(edge, list | tuple) or len(edge) != 2:
            raise ConfigError(f"{key}:edges", edge, "each edge must be a pair [u, v]")
        graph.add_edge(edge[0], edge[1])
    return validate_graph(graph, num_nodes, key=key)


def _file_num_nodes(value: Any, expected: int | None, key: str) -> int:
    """A topology file's ``num_nodes``: an integer the scenario can have, checked before use."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CLIENTS:
        raise ConfigError(key, value, f"must be an integer in 1..{MAX_CLIENTS}")
    if expected is not None and value != expected:
        raise ConfigError(key, value, f"the scenario has {expected} nodes (task.num_clients)")
    return value


def save_graph(graph: nx.Graph, path: str | Path) -> Path:
    """Write ``graph`` in the format its suffix names (edge list, GraphML, JSON or YAML edges)."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix in GRAPHML_SUFFIXES:
        nx.write_graphml(graph, file)
    elif suffix in JSON_SUFFIXES:
        file.write_text(json.dumps(nx.node_link_data(graph, edges="edges")))
    elif suffix in YAML_SUFFIXES:
        payload = {
            "num_nodes": graph.number_of_nodes(),
            "edges": [[int(u), int(v)] for u, v in edge_list(graph)],
        }
        file.write_text(yaml.safe_dump(payload, default_flow_style=None))
    else:
        file.write_text("".join(f"{u} {v}\n" for u, v in edge_list(graph)))
    return file
