"""Algorithm registry. Importing this package registers every built-in algorithm."""

from flsim.algorithms import (  # noqa: F401  (registration side effect)
    compressed_sgd,
    econtrol,
    ef14,
    ef21,
    ef21_sgdm,
    events,
    fedamd,
    fedavg,
    fedbuff,
    feddyn,
    fedprox,
    fedsam,
    fedspeed,
    gossip,
    scaffold,
)
from flsim.algorithms.base import REGISTRY, AlgorithmConfig, Reply, RoundAlgorithm, parse_algorithm_config

__all__ = ["REGISTRY", "AlgorithmConfig", "Reply", "RoundAlgorithm", "parse_algorithm_config"]
