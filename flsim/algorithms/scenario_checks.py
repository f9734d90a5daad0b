"""The scenario's ``algorithm`` section, checked by the part that owns it.

Config validates the generic scenario and leaves ``algorithm`` a raw mapping: only this
package knows which names exist and what each algorithm's hyperparameter model accepts.
The checks below register with :mod:`flsim.config.sections` when the package is imported
(every module of it is), and run after the schema, before a run directory exists.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from flsim.algorithms.base import REGISTRY, AlgorithmConfig, parse_algorithm_config
from flsim.algorithms.batched import check_vectorize
from flsim.config.bounds import check_values
from flsim.config.errors import errors_from_validation
from flsim.config.sections import register_check


def algorithm_config(scenario: Any) -> AlgorithmConfig:
    """The ``algorithm`` section parsed by the named algorithm's model, errors keyed ``algorithm.*``."""
    try:
        return parse_algorithm_config(scenario.algorithm)
    except ValidationError as exc:
        raise errors_from_validation(exc, prefix="algorithm") from None


def check_algorithm(scenario: Any) -> None:
    """The name is registered, the hyperparameters fit its model and suit the scenario.

    ``validate_against`` holds the checks that need the rest of the scenario as well
    (``buffer_size`` at most ``task.num_clients``, ...).
    """
    config = algorithm_config(scenario)
    # A model may coerce text ("inf") into a float: the bounds apply to the parsed values too.
    check_values(config.model_dump(mode="python"), "algorithm")
    REGISTRY[config.name].validate_against(config, scenario)


def check_batched_execution(scenario: Any) -> None:
    """``backend.vectorize: on`` needs an algorithm with a batched client update."""
    config = algorithm_config(scenario)
    check_vectorize(REGISTRY[config.name], config, scenario)


register_check("algorithm", check_algorithm)
register_check("vectorize", check_batched_execution)
