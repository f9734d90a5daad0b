"""What a running study receives: its seed's random streams and a place to record rows.

Studies never build generators from raw seeds: every stream comes from the context, derived
from ``(scenario seed, purpose, index, counter)``, so a study is reproducible and two
purposes never share draws.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from flsim.rng import numpy_rng, torch_rng

if TYPE_CHECKING:
    import torch


class Recorder(Protocol):
    def append_metrics(self, row: dict[str, Any]) -> None: ...


@dataclass
class StudyContext:
    """The seed, the random streams and the metric recorder of one study run."""

    seed: int
    recorder: Recorder
    _row_numbers: itertools.count = field(default_factory=itertools.count)

    def numpy_rng(self, purpose: str, index: int = 0, counter: int = 0) -> np.random.Generator:
        """A NumPy generator for one purpose (e.g. ``"data"``), index (a seed, a width) and counter."""
        return numpy_rng(self.seed, f"study.{purpose}", index, counter)

    def torch_generator(self, purpose: str, index: int = 0, counter: int = 0) -> torch.Generator:
        """A CPU torch generator derived like :meth:`numpy_rng`."""
        return torch_rng(self.seed, f"study.{purpose}", index, counter)

    def with_seed(self, seed: int) -> StudyContext:
        """The same recorder under another seed, for studies that take a median over ``seeds``.

        Under scenario seed 0 (every shipped scenario) the new context's seed is ``seed`` itself;
        under any other scenario seed it is derived from both, so that ``flsim studies run
        --seeds 0 1 2`` gives each run its own streams. Rows recorded through either context
        share one ``round`` numbering.
        """
        if self.seed != 0:
            seed = int(np.random.SeedSequence([self.seed, seed]).generate_state(1, np.uint64)[0] >> 1)
        return StudyContext(seed, self.recorder, self._row_numbers)

    def record(self, row: dict[str, Any]) -> None:
        """Append one metric row; rows are numbered in ``round`` unless the study sets it."""
        row = {"round": next(self._row_numbers), **row}
        self.recorder.append_metrics(row)
