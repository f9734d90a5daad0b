"""Tasks: datasets, partitioners, models, losses and known optima (docs/architecture.md §6).

:func:`build_task` is the single entry point. It is a pure function of ``(cfg, seed)``:
every Ray actor builds its own copy of the task and they must agree bit for bit, so all
randomness comes from :func:`flsim.rng.numpy_rng` streams with fixed purposes
(``"data"``, ``"data/shared"``, ``"split"``, ``"subsample"``, ``"partition"``), data is
generated without BLAS, and each call creates fresh tensors and fresh modules.

The registries map names to builders so ``flsim list`` can print them and new entries can
be added; a new dataset or model name must also be added to the ``Literal`` types of
:mod:`flsim.config.schema` to pass validation.
"""

from __future__ import annotations

from collections.abc import Callable

from flsim.config.errors import ConfigError
from flsim.config.schema import TaskConfig
from flsim.config.sections import register_check
from flsim.tasks.base import ModuleObjective, Objective, Shard, Task
from flsim.tasks.convex import (
    LeastSquaresObjective,
    LogisticObjective,
    build_linreg,
    build_logreg,
    linreg_params,
    logreg_params,
)
from flsim.tasks.leaf import build_synthetic_leaf, leaf_params
from flsim.tasks.models import MODELS, ModelInput, natural_model
from flsim.tasks.partition import PARTITIONERS, partition
from flsim.tasks.pooled import (
    build_cifar10,
    build_digits,
    build_mnist_idx,
    cifar10_params,
    digits_params,
    mnist_idx_params,
)

DatasetBuilder = Callable[[TaskConfig, int], Task]

#: Dataset name -> ``builder(cfg, seed) -> Task`` (data, partition and model together).
DATASETS: dict[str, DatasetBuilder] = {
    "linreg": build_linreg,
    "logreg": build_logreg,
    "synthetic_leaf": build_synthetic_leaf,
    "digits": build_digits,
    "mnist_idx": build_mnist_idx,
    "cifar10": build_cifar10,
}


#: Dataset name -> ``check(cfg)``: reads and checks ``dataset_params`` (and the model name)
#: without generating or loading data, so ``validate`` finds what ``build_task`` would.
DATASET_PARAMS: dict[str, Callable[[TaskConfig], object]] = {
    "linreg": linreg_params,
    "logreg": logreg_params,
    "synthetic_leaf": leaf_params,
    "digits": digits_params,
    "mnist_idx": mnist_idx_params,
    "cifar10": cifar10_params,
}


def check_task(cfg: TaskConfig) -> None:
    """Raise :class:`ConfigError` for bad ``dataset_params`` or model, before any data exists."""
    DATASET_PARAMS[cfg.dataset](cfg)


# Config knows the task section's shape; what each dataset's parameters mean is known here.
register_check("task", lambda scenario: check_task(scenario.task))


def build_task(cfg: TaskConfig, seed: int) -> Task:
    """Build the task described by ``cfg``; the same ``(cfg, seed)`` gives identical tensors.

    Raises :class:`ConfigError` naming the dotted key for bad ``dataset_params``, a model
    that does not fit the dataset (``task.model.name``), or an infeasible partition.
    """
    try:
        builder = DATASETS[cfg.dataset]
    except KeyError:
        raise ConfigError(
            "task.dataset", cfg.dataset, f"unknown dataset (known: {', '.join(sorted(DATASETS))})"
        ) from None
    return builder(cfg, seed)


__all__ = [
    "DATASETS",
    "DATASET_PARAMS",
    "MODELS",
    "PARTITIONERS",
    "DatasetBuilder",
    "LeastSquaresObjective",
    "LogisticObjective",
    "ModelInput",
    "ModuleObjective",
    "Objective",
    "Shard",
    "Task",
    "build_task",
    "check_task",
    "natural_model",
    "partition",
]
