"""Graph spec strings of the CLI (``ring:n=16``, ``torus:rows=4,cols=4`` or a file path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx

from flsim.config.errors import ConfigError
from flsim.topology.graph_files import load_graph, resolve_topology_path
from flsim.topology.graphs import (
    BUILDERS,
    build_graph,
)


def parse_value(text: str) -> Any:
    """``3`` -> int, ``0.5`` -> float, ``true``/``false`` -> bool, anything else stays a string."""
    lowered = text.strip().lower()
    if lowered in {"true", "yes", "on"}:
        return True
    if lowered in {"false", "no", "off"}:
        return False
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    return text.strip()


def parse_spec(spec: str, *, key: str = "spec") -> tuple[str, dict[str, Any]] | Path:
    """A CLI spec: a file path (or named file in ``topologies/``) or ``kind:key=value,...``."""
    candidate = Path(spec)
    if candidate.is_file():
        return candidate
    kind, _, rest = spec.partition(":")
    kind = kind.strip()
    if kind in BUILDERS:
        params: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in rest.split(","))):
            name, sep, value = item.partition("=")
            if not sep or not name.strip():
                raise ConfigError(key, spec, f"expected kind:key=value,...; bad item {item!r}")
            params[name.strip()] = parse_value(value)
        return kind, params
    try:
        return resolve_topology_path(spec, key=key)
    except ConfigError:
        raise ConfigError(
            key, spec, f"neither a topology file nor kind:key=value,... with a kind in {sorted(BUILDERS)}"
        ) from None


def graph_from_spec(spec: str, *, seed: int = 0, key: str = "spec") -> nx.Graph:
    """Build or load the graph a CLI spec names."""
    parsed = parse_spec(spec, key=key)
    if isinstance(parsed, Path):
        return load_graph(parsed, seed=seed, key=key)
    kind, params = parsed
    return build_graph(kind, params, seed=seed, key=key)
