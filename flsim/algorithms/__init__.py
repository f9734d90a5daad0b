"""Algorithm registry. Importing this package registers every built-in algorithm."""

from flsim.algorithms import (  # noqa: F401  (registration side effect)
    fedamd,
    fedavg,
    fedbuff,
    feddyn,
    fedprox,
    fedsam,
    fedspeed,
    scaffold,
)
from flsim.algorithms.base import REGISTRY, AlgorithmConfig, Reply, RoundAlgorithm, parse_algorithm_config

__all__ = ["REGISTRY", "AlgorithmConfig", "Reply", "RoundAlgorithm", "parse_algorithm_config"]
