"""Who takes part in a round, and with what aggregation weight (the ``sampling`` section).

``fixed`` and ``bernoulli`` are :func:`flsim.engine.sampling.sample_clients`, unchanged.
``temperature`` and ``dpp`` draw with :mod:`flsim.algorithms.selection`:

* temperature: m = clients-per-round independent draws (docs/building_blocks.md). A client
  drawn c times trains once and its reply weighs c times as much: its update is a function of
  (seed, client, round) only, so training it again would repeat the same numbers. The weights
  travel on the replies (``Reply.weight``) to the server's aggregation.
* dpp: a diverse set (k-DPP of size m, or an L-ensemble with m clients on average) over the
  clients' label histograms; the algorithm's own ``weighting`` then averages the set.

Every draw comes from a ``("sampling.<kind>", attempt, round)`` stream of the run's seed, so
a round's selection is the same on every backend and after ``--resume``: there is no state.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from flsim.algorithms import REGISTRY
from flsim.algorithms.base import Reply
from flsim.algorithms.selection import (
    DppSampler,
    draw_weighted,
    label_histograms,
    rbf_kernel,
    temperature_distribution,
)
from flsim.config.errors import ConfigError
from flsim.config.schema import Scenario
from flsim.config.sections import register_check
from flsim.engine.sampling import sample_clients
from flsim.rng import numpy_rng
from flsim.tasks.base import Task

#: A DPP costs an N × N eigendecomposition once per run: beyond this many clients it is not a toy.
MAX_DPP_CLIENTS = 5000
#: Datasets without class labels, so without label histograms.
REGRESSION_DATASETS = frozenset({"linreg"})
#: An L-ensemble draws the empty set with probability Π 1/(1 + αλ_n); give up after this many.
MAX_EMPTY_DRAWS = 1000


@dataclass(frozen=True)
class Selection:
    """A round's participants (sorted) and their weights (None: the algorithm's weighting)."""

    clients: list[int]
    weights: dict[int, float] | None = None

    def weigh(self, replies: list[Reply]) -> list[Reply]:
        """The replies carrying this selection's weights (unchanged when it sets none)."""
        if self.weights is None:
            return replies
        weights = self.weights
        return [dataclasses.replace(reply, weight=weights[reply.client]) for reply in replies]


class ClientSelector:
    """Draws each round's :class:`Selection` for one run; a pure function of (seed, round)."""

    def __init__(self, scenario: Scenario, task: Task) -> None:
        self.scenario = scenario
        self.task = task
        self.count = scenario.expected_participants()
        self._dpp: DppSampler | None = None

    def select(self, round_index: int) -> Selection:
        sc, n = self.scenario, self.task.num_clients
        kind = sc.sampling.kind
        if kind == "temperature":
            return self._temperature(round_index)
        if kind == "dpp":
            return self._dpp_draw(round_index)
        fraction = sc.participation if sc.participation is not None else self.count / n
        return Selection(sample_clients(sc.seed, round_index, n, kind, self.count, fraction))

    def distributions(self, round_index: int) -> tuple[np.ndarray, np.ndarray]:
        """(target p ∝ n_k^{1/τ_t}, natural q ∝ n_k) of round ``round_index``."""
        sizes = np.asarray(self.task.client_sizes(), dtype=np.float64)
        tau = self.scenario.sampling.temperature(round_index)
        return temperature_distribution(sizes, tau), sizes / sizes.sum()

    def _temperature(self, round_index: int) -> Selection:
        target, natural = self.distributions(round_index)
        draw_from = natural if self.scenario.sampling.weighting == "importance" else target
        rng = numpy_rng(self.scenario.seed, "sampling.temperature", 0, round_index)
        weights = draw_weighted(rng, draw_from, target, self.count)
        return Selection(sorted(weights), weights)

    def dpp(self) -> DppSampler:
        """The run's DPP, built on first use (one eigendecomposition)."""
        if self._dpp is None:
            task, sampling = self.task, self.scenario.sampling
            labels = [np.asarray(client.y, dtype=np.int64) for client in task.clients]
            classes = task.num_classes or 1 + max(int(y.max()) for y in labels if len(y))
            kernel = rbf_kernel(label_histograms(labels, classes), sampling.bandwidth)
            self._dpp = DppSampler(kernel, self.count, fixed_size=sampling.size == "fixed")
        return self._dpp

    def _dpp_draw(self, round_index: int) -> Selection:
        sampler = self.dpp()
        for attempt in range(MAX_EMPTY_DRAWS):
            chosen = sampler.draw(numpy_rng(self.scenario.seed, "sampling.dpp", attempt, round_index))
            if chosen:
                return Selection(chosen)
        raise RuntimeError(f"the DPP drew no client {MAX_EMPTY_DRAWS} times in round {round_index}")


def check_sampling(scenario: Scenario) -> None:
    """The sampling kind fits the algorithm and the task (registered as the ``sampling`` check).

    Runs after the ``algorithm`` check, so the algorithm's name is registered.
    """
    sampling = scenario.sampling
    if sampling.kind in ("fixed", "bernoulli"):
        return
    algorithm = REGISTRY[scenario.algorithm["name"]]
    mode = getattr(algorithm, "mode", "sync")
    if mode != "sync":
        reason = f"{algorithm.name!r} is a {mode!r} algorithm; only synchronous rounds sample this way"
        raise ConfigError("sampling.kind", sampling.kind, reason)
    if sampling.kind == "temperature" and not getattr(algorithm, "selection_weights", False):
        fits = "fedavg, fedprox, fedsam do"
        reason = f"{algorithm.name!r} takes no aggregation weights from a sampler ({fits})"
        raise ConfigError("sampling.kind", sampling.kind, reason)
    if sampling.kind == "dpp" and scenario.task.dataset in REGRESSION_DATASETS:
        reason = f"task.dataset {scenario.task.dataset} has no class labels"
        raise ConfigError("sampling.features", sampling.features, reason)
    if sampling.kind == "dpp" and scenario.task.num_clients > MAX_DPP_CLIENTS:
        reason = f"the DPP's N × N eigendecomposition allows at most {MAX_DPP_CLIENTS} clients"
        raise ConfigError("task.num_clients", scenario.task.num_clients, reason)


register_check("sampling", check_sampling)
