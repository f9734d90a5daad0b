"""The package dependency graph of flsim: edges, cycles and upward arrows against the layers.

Every ``import`` in ``flsim/`` counts, late imports inside functions included: a late import
hides a cycle from Python, not from the reader. A node is a subpackage or a top-level module
of ``flsim``. An arrow is *upward* when it points from a lower layer to a higher one in the
layer order of docs/architecture.md. Used for the before/after numbers of a refactor::

    python scripts/dependency_graph.py --root .
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import networkx as nx

#: Higher number = higher layer (docs/architecture.md). Parts of one layer may import each
#: other as long as no cycle forms.
LAYERS: dict[str, int] = {
    "cli": 9,
    "study_cli": 9,
    "describe": 9,
    "api": 8,
    "sweep": 8,
    "scenario": 8,
    "report": 7,
    "dashboard": 7,
    "results": 6,
    "progress": 6,
    "engine": 5,
    "backends": 4,
    "hosts": 3,
    "algorithms": 2,
    "tasks": 2,
    "topology": 2,
    "compression": 2,
    "optim": 2,
    "studies": 2,
    "config": 0,
    "rng": 0,
    "lazy": 0,
    "__init__": 0,
}


def _part(module: str, root: Path) -> str | None:
    """The graph node of a dotted module name, or None outside flsim."""
    parts = module.split(".")
    if parts[0] != "flsim" or len(parts) < 2:
        return None
    name = parts[1]
    if (root / "flsim" / name).is_dir() or (root / "flsim" / f"{name}.py").is_file():
        return name
    return None


def _imported(node: ast.AST, package: list[str]) -> list[str]:
    """Dotted names an import statement reaches, relative imports resolved."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        base = ".".join([*package[: len(package) - node.level + 1], base]).rstrip(".")
    return [f"{base}.{alias.name}" for alias in node.names]


def graph(root: Path) -> nx.DiGraph:
    """Package-level import graph of the ``flsim`` package under ``root``."""
    result = nx.DiGraph()
    for path in sorted((root / "flsim").rglob("*.py")):
        relative = path.relative_to(root).with_suffix("")
        package = list(relative.parts[:-1])
        source = _part(".".join(relative.parts), root)
        if source is None or source == "__main__":
            continue
        result.add_node(source)
        for node in ast.walk(ast.parse(path.read_text())):
            for target in _imported(node, package):
                dest = _part(target, root)
                if dest is not None and dest not in (source, "__main__"):
                    result.add_edge(source, dest)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default=".")
    args = parser.parse_args()
    g = graph(Path(args.root))
    upward = sorted((a, b) for a, b in g.edges if LAYERS.get(a, 5) < LAYERS.get(b, 5))
    cycles = list(nx.simple_cycles(g))
    pairs = sorted({tuple(sorted(c)) for c in cycles if len(c) == 2})
    groups = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    print(f"nodes: {g.number_of_nodes()}  edges: {g.number_of_edges()}")
    for a in sorted(g):
        print(f"  {a} -> {', '.join(sorted(g.successors(a)))}")
    print(f"elementary cycles: {len(cycles)}  mutual pairs: {len(pairs)} {pairs}")
    print(f"strongly connected groups: {groups}")
    print(f"upward arrows: {len(upward)}")
    for a, b in upward:
        print(f"  {a} -> {b}")


if __name__ == "__main__":
    main()
