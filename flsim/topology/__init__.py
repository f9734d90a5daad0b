"""Communication graphs, gossip matrices, spectral quantities and per-edge rates.

Builders and loaders (:mod:`.graphs`), gossip weights G1-G5 (:mod:`.mixing`, solvers in
:mod:`.sdp`), SLEM / spectral gap / λ₂ / DADAO χ's (:mod:`.spectral`), optimal per-edge rates
A6 (:mod:`.rates`), per-round schedules (:mod:`.schedule`) and the ``topology`` CLI.
"""

from flsim.topology.config import TopologyConfig
from flsim.topology.graphs import (
    BUILDERS,
    build_graph,
    edge_list,
    graph_from_spec,
    incidence_matrix,
    load_graph,
    parse_spec,
    save_graph,
    validate_graph,
)
from flsim.topology.mixing import Mixing, MixingError, MixingResult, check_mixing, mixing_matrix
from flsim.topology.rates import EdgeRates, edge_rates_for, optimal_rates, uniform_edge_rates
from flsim.topology.schedule import RoundTopology, TopologySchedule, build_schedule
from flsim.topology.spectral import (
    chi_values,
    graph_chis,
    laplacian_lambda2,
    slem,
    spectral_gap,
    uniform_rate_scale,
)


def describe_topology(spec, mixing: str = "metropolis", solver: str = "auto", *, seed: int = 0) -> dict:
    """See :func:`flsim.topology.cli.describe_topology` (imported lazily: the CLI pulls in rich)."""
    from flsim.topology.cli import describe_topology as describe

    return describe(spec, mixing, solver, seed=seed)


__all__ = [
    "BUILDERS",
    "EdgeRates",
    "Mixing",
    "MixingError",
    "MixingResult",
    "RoundTopology",
    "TopologyConfig",
    "TopologySchedule",
    "build_graph",
    "build_schedule",
    "check_mixing",
    "chi_values",
    "describe_topology",
    "edge_list",
    "edge_rates_for",
    "graph_chis",
    "graph_from_spec",
    "incidence_matrix",
    "laplacian_lambda2",
    "load_graph",
    "mixing_matrix",
    "optimal_rates",
    "parse_spec",
    "save_graph",
    "slem",
    "spectral_gap",
    "uniform_edge_rates",
    "uniform_rate_scale",
    "validate_graph",
]
