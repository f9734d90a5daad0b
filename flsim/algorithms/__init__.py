"""Algorithm registry. Importing this package registers every built-in algorithm."""

from flsim.algorithms import fedavg  # noqa: F401  (registration side effect)
from flsim.algorithms.base import REGISTRY, AlgorithmConfig, Reply, RoundAlgorithm, parse_algorithm_config

__all__ = ["REGISTRY", "AlgorithmConfig", "Reply", "RoundAlgorithm", "parse_algorithm_config"]
