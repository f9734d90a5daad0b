"""Small helpers shared by the dataset builders."""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import Tensor

from flsim.config.schema import TaskConfig

logger = logging.getLogger(__name__)


def to_tensor(array: np.ndarray) -> Tensor:
    """A torch tensor sharing memory with (a contiguous version of) ``array``, same dtype."""
    return torch.from_numpy(np.ascontiguousarray(array))


def rowdot(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """``matrix @ vector`` without BLAS.

    Used when *generating* data: an elementwise product followed by NumPy's pairwise sum
    has a fixed evaluation order, whereas BLAS kernels differ between CPUs (FMA, blocking).
    This keeps generated datasets bit-identical on every machine of a heterogeneous cluster.
    """
    return (matrix * vector).sum(axis=1)


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` items in ``parts`` counts differing by at most one (larger counts first)."""
    base, extra = divmod(total, parts)
    return [base + (1 if k < extra else 0) for k in range(parts)]


def round_significant(value: float, digits: int = 12) -> float:
    """Round a LAPACK-derived constant so last-bit differences between CPUs cannot leak out.

    Smoothness and strong-convexity constants may set step sizes; eigenvalue routines can
    differ in the last ulp across machines, rounding to 12 significant digits removes that.
    """
    return float(f"{value:.{digits}g}")


def warn_unused_partition(cfg: TaskConfig) -> None:
    """Naturally federated datasets ignore ``task.partition``; say so rather than stay silent."""
    if "partition" in cfg.model_fields_set:
        logger.warning(
            "task.partition is ignored for dataset %r: each client's data comes from its own distribution",
            cfg.dataset,
        )
