"""Communication graphs, gossip matrices, spectral quantities and per-edge rates.

Builders and loaders (:mod:`.graphs`), gossip weights G1-G5 (:mod:`.mixing`, solvers in
:mod:`.sdp`), SLEM / spectral gap / λ₂ / DADAO χ's (:mod:`.spectral`), optimal per-edge rates
A6 (:mod:`.rates`), per-round schedules (:mod:`.schedule`) and the ``topology`` CLI.

The names below are imported on first use (:mod:`flsim.lazy`): a scenario needs only the
light :mod:`.config`.
"""

from __future__ import annotations

from flsim.lazy import lazy_exports

#: Public name -> the submodule that defines it.
_SOURCES = {
    "describe_topology": "cli",
    "TopologyConfig": "config",
    "BUILDERS": "graphs",
    "build_graph": "graphs",
    "edge_list": "graphs",
    "graph_from_spec": "graph_spec",
    "incidence_matrix": "graphs",
    "load_graph": "graph_files",
    "parse_spec": "graph_spec",
    "save_graph": "graph_files",
    "validate_graph": "graphs",
    "Mixing": "mixing",
    "MixingError": "mixing",
    "MixingResult": "mixing",
    "check_mixing": "mixing",
    "mixing_matrix": "mixing",
    "EdgeRates": "rates",
    "edge_rates_for": "rates",
    "optimal_rates": "rates",
    "uniform_edge_rates": "rates",
    "RoundTopology": "schedule",
    "TopologySchedule": "schedule",
    "build_schedule": "schedule",
    "chi_values": "spectral",
    "graph_chis": "spectral",
    "laplacian_lambda2": "spectral",
    "slem": "spectral",
    "spectral_gap": "spectral",
    "uniform_rate_scale": "spectral",
}

__all__ = sorted(_SOURCES)
__getattr__ = lazy_exports(__name__, _SOURCES)
