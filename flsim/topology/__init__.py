"""Communication graphs, gossip matrices, spectral quantities and per-edge rates."""

from flsim.topology.config import TopologyConfig
from flsim.topology.graphs import build_graph, load_graph, validate_graph
from flsim.topology.mixing import Mixing, check_mixing, mixing_matrix
from flsim.topology.rates import EdgeRates, optimal_rates, uniform_edge_rates
from flsim.topology.schedule import TopologySchedule, build_schedule
from flsim.topology.spectral import chi_values, slem

__all__ = [
    "EdgeRates",
    "Mixing",
    "TopologyConfig",
    "TopologySchedule",
    "build_graph",
    "build_schedule",
    "check_mixing",
    "chi_values",
    "load_graph",
    "mixing_matrix",
    "optimal_rates",
    "slem",
    "uniform_edge_rates",
    "validate_graph",
]
