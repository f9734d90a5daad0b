"""Seeded train/test splits of scikit-learn's digits, shared by the studies that train on them.

Several studies (AdamP, Drop-Muon, EVA, IST) need the same thing: the bundled digits as
tensors, cut at random into train and test by a generator from the study's context. One
definition keeps their splits identical in meaning and lets a reader check it once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from flsim.tasks.pooled import load_digits_data


@dataclass(frozen=True)
class Split:
    """Inputs and labels of a train and a test set."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


def random_split(x: Tensor, y: Tensor, rng: np.random.Generator, test_fraction: float) -> Split:
    """A random permutation cut at ``test_fraction`` (at least one test example): test first."""
    order = rng.permutation(len(y))
    n_test = max(1, round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    return Split(x[train], y[train], x[test], y[test])


def digits_tensors() -> tuple[Tensor, Tensor]:
    """The 1797 digits as float32 pixels / 16 and int64 labels."""
    data = load_digits_data()
    return torch.from_numpy(data.x).float(), torch.from_numpy(data.y).long()


def digits_split(rng: np.random.Generator, test_fraction: float) -> Split:
    """A seeded random train/test split of the whole digits set."""
    x, y = digits_tensors()
    return random_split(x, y, rng, test_fraction)
