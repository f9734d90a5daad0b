"""The algorithm registry. Importing this package registers every built-in algorithm.

One module per algorithm, each registering its class with :func:`~flsim.algorithms.base.register`
whatever its mode; every module of this package is imported here (in name order), so adding
an algorithm is adding its file. ``base``, ``client``, ``gossip`` and ``events`` hold the
shared contracts and helpers.
"""

import importlib
import pkgutil

from flsim.algorithms.base import REGISTRY, AlgorithmConfig, Reply, RoundAlgorithm, parse_algorithm_config

for _module in sorted(info.name for info in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["REGISTRY", "AlgorithmConfig", "Reply", "RoundAlgorithm", "parse_algorithm_config"]
