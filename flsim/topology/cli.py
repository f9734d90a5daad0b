"""``flsim topology show|rates``: inspect a graph before running on it.

SPEC is a topology file (YAML, edge list, GraphML, JSON node-link; a bare name is looked up
in ``topologies/``) or ``kind:key=value,...`` such as ``torus:rows=8,cols=8``. User errors
raise :class:`ConfigError`, which the main CLI maps to exit code 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from flsim.config.errors import ConfigError
from flsim.topology.graph_spec import graph_from_spec
from flsim.topology.mixing import MIXING_METHODS, SOLVERS, Mixing, mixing_matrix
from flsim.topology.rates import EdgeRates, optimal_rates, uniform_edge_rates
from flsim.topology.spectral import laplacian_lambda2


def describe_topology(
    spec: str | nx.Graph, mixing: str = "metropolis", solver: str = "auto", *, seed: int = 0
) -> dict[str, Any]:
    """Size, degrees, the gossip matrix's SLEM and gap, λ₂(L) and DADAO's χ's (uniform rates).

    ``spec`` is a CLI spec string or an already-built graph. χ₁, χ₂ are those of the uniform
    allocation Λ = s L_p (A1), whose total rate is ``uniform_total_rate``.
    """
    graph = spec if isinstance(spec, nx.Graph) else graph_from_spec(spec, seed=seed)
    result = mixing_matrix(graph, mixing, solver, key="--mixing")
    rates = uniform_edge_rates(graph)
    degrees = [d for _, d in graph.degree()]
    info: dict[str, Any] = {
        "spec": spec if isinstance(spec, str) else None,
        "n_nodes": graph.number_of_nodes(),
        "n_edges": graph.number_of_edges(),
        "degree_min": int(min(degrees)),
        "degree_max": int(max(degrees)),
        "degree_mean": float(np.mean(degrees)),
        "diameter": int(nx.diameter(graph)) if graph.number_of_nodes() <= 2000 else None,
        "laplacian_lambda2": laplacian_lambda2(graph),
        "lambda2": laplacian_lambda2(graph),  # short alias: λ₂(L), the algebraic connectivity
        "chi1": rates.chi1,
        "chi2": rates.chi2,
        "uniform_total_rate": rates.uniform_total_rate,
    }
    info.update(result.summary())
    info["edge_weights"] = _edge_weight_rows(result)
    info["self_weights"] = [float(x) for x in np.diag(result.weights)]
    return info


def _edge_weight_rows(result: Mixing) -> list[dict[str, Any]]:
    return [{"edge": [int(i), int(j)], "weight": float(result.weights[i, j])} for i, j in result.edges]


def topology_rates(spec: str | nx.Graph, *, seed: int = 0, formulation: str = "barrier") -> EdgeRates:
    """(A6) optimal per-edge rates of the graph ``spec`` names."""
    graph = spec if isinstance(spec, nx.Graph) else graph_from_spec(spec, seed=seed)
    return optimal_rates(graph, formulation=formulation)


# --------------------------------------------------------------------------- output


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return str(value)


def _print_table(title: str, rows: list[tuple[str, Any]], out: Any) -> None:
    """A rich table when rich is installed, aligned plain text otherwise."""
    if importlib.util.find_spec("rich") is not None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, show_header=False)
        table.add_column("quantity", style="bold")
        table.add_column("value")
        for name, value in rows:
            table.add_row(name, _number(value))
        Console(file=out).print(table)
        return
    width = max(len(name) for name, _ in rows)
    out.write(f"{title}\n")
    for name, value in rows:
        out.write(f"  {name.ljust(width)}  {_number(value)}\n")


def plot_topology(graph: nx.Graph, mixing: Mixing, path: str | Path, *, seed: int = 0) -> Path:
    """Draw the graph, edge widths ∝ gossip weights: matplotlib, else plotly + kaleido, else
    the built-in NumPy/zlib PNG writer (:mod:`flsim.topology.png`, PNG only, no labels).

    Raises :class:`ConfigError` (key ``--plot``) naming what to install for other formats.
    """
    target = Path(path)
    positions = _layout(graph, seed)
    weights = [abs(float(mixing.weights[i, j])) for i, j in mixing.edges]
    top = max(weights, default=1.0) or 1.0
    widths = [0.5 + 4.5 * w / top for w in weights]
    if importlib.util.find_spec("matplotlib") is not None:
        return _plot_matplotlib(graph, mixing, positions, widths, target)
    if importlib.util.find_spec("plotly") is not None and importlib.util.find_spec("kaleido") is not None:
        import plotly.graph_objects as go

        figure = go.Figure()
        for (i, j), width in zip(mixing.edges, widths, strict=True):
            figure.add_trace(
                go.Scatter(
                    x=[positions[i][0], positions[j][0]],
                    y=[positions[i][1], positions[j][1]],
                    mode="lines",
                    line={"width": width, "color": "steelblue"},
                    showlegend=False,
                )
            )
        nodes = [positions[i] for i in range(graph.number_of_nodes())]
        figure.add_trace(
            go.Scatter(x=[p[0] for p in nodes], y=[p[1] for p in nodes], mode="markers", showlegend=False)
        )
        figure.update_layout(title=f"{mixing.method}: SLEM {mixing.slem:.4f}", width=600, height=600)
        figure.write_image(str(target))
        return target
    if target.suffix.lower() != ".png":
        raise ConfigError(
            "--plot",
            str(path),
            "without matplotlib (pip install matplotlib) or plotly + kaleido only .png output is available",
        )
    from flsim.topology.png import draw_graph_png

    title = f"{mixing.method}: SLEM {mixing.slem:.4f}"
    signed = [float(mixing.weights[i, j]) for i, j in mixing.edges]
    return draw_graph_png(positions, mixing.edges, signed, target, title=title)


def _plot_matplotlib(
    graph: nx.Graph,
    mixing: Mixing,
    positions: dict[int, tuple[float, float]],
    widths: list[float],
    target: Path,
) -> Path:
    """The matplotlib drawing of :func:`plot_topology`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 6))
    for (i, j), width in zip(mixing.edges, widths, strict=True):
        axes.plot(*zip(positions[i], positions[j], strict=True), color="tab:blue", linewidth=width, zorder=1)
    xs, ys = zip(*(positions[i] for i in range(graph.number_of_nodes())), strict=True)
    axes.scatter(xs, ys, s=60, color="white", edgecolors="black", zorder=2)
    axes.set_title(f"{mixing.method}: SLEM {mixing.slem:.4f}")
    axes.set_axis_off()
    figure.savefig(target, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return target


def _layout(graph: nx.Graph, seed: int) -> dict[int, tuple[float, float]]:
    """Stored positions (geometric graphs) if any, else a deterministic spring layout."""
    stored = nx.get_node_attributes(graph, "pos")
    if len(stored) == graph.number_of_nodes():
        return {i: (float(p[0]), float(p[1]) if len(p) > 1 else 0.0) for i, p in stored.items()}
    layout = nx.spring_layout(graph, seed=seed)
    return {int(i): (float(p[0]), float(p[1])) for i, p in layout.items()}


# --------------------------------------------------------------------------- handlers


def _cmd_show(args: argparse.Namespace) -> int:
    info = describe_topology(args.spec, args.mixing, args.solver, seed=args.seed)
    if args.plot:
        graph = graph_from_spec(args.spec, seed=args.seed)
        plot_topology(
            graph, mixing_matrix(graph, args.mixing, args.solver, key="--mixing"), args.plot, seed=args.seed
        )
        info["plot"] = str(args.plot)
    out = getattr(args, "stdout", None) or sys.stdout
    if args.json:
        out.write(json.dumps(info, indent=2) + "\n")
        return 0
    keys = [
        "n_nodes",
        "n_edges",
        "degree_min",
        "degree_max",
        "degree_mean",
        "diameter",
        "mixing",
        "solver",
        "status",
        "slem",
        "spectral_gap",
        "laplacian_lambda2",
        "chi1",
        "chi2",
        "uniform_total_rate",
        "solve_seconds",
    ]
    _print_table(f"topology {args.spec}", [(k, info[k]) for k in keys], out)
    if info["fallback"]:
        out.write("WARNING: the solver failed and Metropolis weights were used instead\n")
    return 0


def _cmd_rates(args: argparse.Namespace) -> int:
    rates = topology_rates(args.spec, seed=args.seed)
    out = getattr(args, "stdout", None) or sys.stdout
    summary = rates.summary()
    if args.json:
        out.write(json.dumps(summary, indent=2) + "\n")
        return 0
    rows = [
        (k, summary[k])
        for k in ("method", "total_rate", "uniform_total_rate", "savings", "chi1", "chi2", "chi1_chi2")
    ]
    rows += [(f"rate {i}-{j}", r) for (i, j), r in zip(rates.edges, rates.rates, strict=True)]
    _print_table(f"optimal rates {args.spec}", rows, out)
    return 0


def register_cli(subparsers: Any) -> None:
    """Add ``topology show`` and ``topology rates`` to the main CLI's sub-command parsers."""
    parser = subparsers.add_parser(
        "topology", help="inspect a graph: gossip weights, spectral gap, DADAO rates"
    )
    sub = parser.add_subparsers(dest="topology_command", required=True)

    show = sub.add_parser("show", help="size, SLEM, spectral gap, chi1/chi2 and the gossip weights")
    show.add_argument("spec", help="topology file, or kind:key=value,... (e.g. torus:rows=8,cols=8)")
    show.add_argument("--mixing", default="metropolis", choices=list(MIXING_METHODS))
    show.add_argument("--solver", default="auto", choices=list(SOLVERS))
    show.add_argument("--seed", type=int, default=0, help="seed for random graph kinds")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show.add_argument("--plot", metavar="OUT.png", help="draw the graph, edge widths proportional to weights")
    show.set_defaults(func=_cmd_show)

    rates = sub.add_parser("rates", help="optimal per-edge Poisson rates for DADAO (docs/algorithms.md A6)")
    rates.add_argument("spec", help="topology file, or kind:key=value,...")
    rates.add_argument("--seed", type=int, default=0, help="seed for random graph kinds")
    rates.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rates.set_defaults(func=_cmd_rates)
