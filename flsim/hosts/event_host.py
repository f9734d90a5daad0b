"""The event simulation: superposed Poisson clocks of nodes and edges (docs/algorithms.md A).

This is host code: a whole event-driven run executes in one place, in process or on a Ray
coordinator actor (an :class:`~flsim.backends.base.EventCoordinator` decides which), and
:mod:`flsim.engine.event_driver` drives it.

The process is simulated exactly: inter-arrival times are Exp(R) with R = Σ node rates +
Σ λ_ij, and each event is chosen with probability proportional to its clock's rate. All
draws come from one ``("events",)`` stream, drawn in fixed-size blocks of standard
exponentials and uniforms, so the trajectory is a pure function of the seed. Evaluation
happens on a virtual-time grid (``eval.every_time``) at the exact grid times: models are
integrated to the grid time without disturbing the state.

Time-varying graphs (``topology.time_varying: cycle``): the graph in force on
[k·τ, (k+1)·τ) is ``cycle[k mod len]``, with τ = 1/χ₁ as in the official DADAO code
(``EventConfig.switch_every``). Each graph has its own rate distribution over its edges and
all share one total rate (:func:`common_total_rate`); since the node clocks are unchanged,
R is constant, but the edge clocks change at switch times, so a draw that crosses a switch
time is discarded and the clock restarts there (exact: the exponential is memoryless).

Synchronous algorithms (ADOM+) run in the same driver on a global clock: iteration k ends
at k/compute_rate, with the same budgets, evaluation grid and counters.

The simulation is a driver of the run loop shared with the round drivers
(:mod:`flsim.hosts.run_loop`): its loops pause at each grid point as a step, and the run
loop writes the row, advances progress and checkpoints. Checkpoints (``checkpoint.every``:
evaluation rows between checkpoints) hold the random stream's state and its current block,
the algorithm's arrays, the counters and the rows written so far; a resumed run is
bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from flsim.algorithms.base import REGISTRY, parse_algorithm_config
from flsim.algorithms.events import EventAlgorithm, EventConfig, SynchronousEventAlgorithm
from flsim.config.schema import Scenario
from flsim.hosts.client_host import initial_model
from flsim.hosts.counters import Counters
from flsim.hosts.run_loop import Cadence, RunLoop, Step, TimeGrid
from flsim.hosts.sinks import KeptRows, Progress, RowSink
from flsim.rng import Streams, numpy_rng
from flsim.tasks.base import Task
from flsim.topology import (
    EdgeRates,
    TopologyConfig,
    build_graph,
    load_graph,
    optimal_rates,
    uniform_edge_rates,
    validate_graph,
)

BLOCK = 4096


#: Elements per block of :func:`mean_sq_distance`: its temporaries stay a few megabytes.
DISTANCE_BLOCK = 1 << 18


def mean_sq_distance(models: np.ndarray, center: np.ndarray) -> float:
    """The mean over nodes of ‖x_i − c‖², bit-identical to ``((models - c) ** 2).sum(1).mean()``.

    Computed a few rows at a time: each row's sum is the same pairwise sum whatever the
    number of rows, but no N × d temporary is made. For a neural network (N × d of tens of
    megabytes) two such fresh temporaries cost most of an evaluation row: the kernel faults
    in their pages, 0.1–0.2 s at the first row of a run, where the rest costs milliseconds.
    """
    rows = max(1, DISTANCE_BLOCK // max(1, int(np.prod(models.shape[1:]))))
    sums = np.empty(models.shape[0])
    for start in range(0, models.shape[0], rows):
        sums[start : start + rows] = ((models[start : start + rows] - center) ** 2).sum(axis=1)
    return float(sums.mean())


@dataclass
class EventCounters(Counters):
    """The round drivers' accounting plus the number of communication events."""

    communications: int = 0


@dataclass(frozen=True)
class Clock:
    """One graph's superposed clock: node clocks first, then edges; ``cumulative[-1] == 1``."""

    rates: EdgeRates
    total_rate: float
    cumulative: list[float]


def event_graphs(config: TopologyConfig, num_nodes: int, seed: int) -> list[EdgeRates]:
    """The graphs (with their rates, ``topology.rates``) an event run cycles through."""
    if config.time_varying == "cycle":
        entries = list(config.cycle)
    elif config.time_varying == "none":
        entries = [config.file if config.file is not None else {"kind": config.kind, "params": config.params}]
    else:
        from flsim.config.errors import ConfigError

        raise ConfigError("topology.time_varying", config.time_varying, "event runs take 'none' or 'cycle'")
    out = []
    for index, entry in enumerate(entries):
        # Entry k draws a random graph as round k would, so a cycle of random graphs (e.g. 50
        # random geometric graphs, as in the DADAO code) holds different graphs.
        key = "topology" if config.time_varying == "none" else f"topology.cycle.{index}"
        if isinstance(entry, str):
            graph = load_graph(entry, num_nodes, seed, round_index=index, key=key)
        else:
            graph = build_graph(
                entry["kind"], entry.get("params", {}), num_nodes, seed, round_index=index, key=key
            )
        graph = validate_graph(graph, num_nodes)
        out.append(optimal_rates(graph) if config.rates == "sdp" else uniform_edge_rates(graph))
    return out if len(out) == 1 else common_total_rate(out)


def common_total_rate(graphs: list[EdgeRates]) -> list[EdgeRates]:
    """Rates for a cycle: each graph keeps its own distribution p_k = λ_k / Σλ_k (uniform or
    SDP), all share one total s = √(2 max_k χ₁(P_k) · max_k χ₂(P_k)), P_k = B diag(p_k) Bᵀ.

    DADAO's rate condition (A1) bounds the product of the *worst* χ₁ and the *worst* χ₂ over
    time; giving each graph its own χ₁χ₂ = ½ total does not (a cycle mixing a path and a
    star then diverges). With uniform p_k this is exactly the official code's ``lamb_mix``.
    """
    chi1 = max(g.chi1 * g.total_rate for g in graphs)  # χ₁(P_k) = χ₁(Λ_k) · Σλ_k
    chi2 = max(g.chi2 * g.total_rate for g in graphs)
    total = math.sqrt(2 * chi1 * chi2)
    out = []
    for g in graphs:
        scale = total / g.total_rate
        out.append(
            replace(
                g,
                rates=[r * scale for r in g.rates],
                chi1=g.chi1 / scale,
                chi2=g.chi2 / scale,
                total_rate=total,
            )
        )
    return out


def _clock(rates: EdgeRates, num_nodes: int, compute_rate: float) -> Clock:
    clock_rates = np.concatenate([np.full(num_nodes, compute_rate), np.asarray(rates.rates, dtype=float)])
    total = float(clock_rates.sum())
    cumulative = np.cumsum(clock_rates) / total
    cumulative[-1] = 1.0  # a uniform in [0, 1) never falls past the last clock
    return Clock(rates, total, cumulative.tolist())


class EventSimulation:
    """An event-driven run, as a driver of the shared :class:`~flsim.hosts.run_loop.RunLoop`:
    its ``steps()`` run the clocks and stop at every evaluation point of its time grid."""

    def __init__(self, scenario: Scenario, task: Task, writer: RowSink, progress: Progress) -> None:
        self.scenario = scenario
        self.task = task
        self.writer = writer
        #: ``writer``, keeping the rows written so far: a checkpoint carries them.
        self.sink = KeptRows(writer)
        self.progress = progress
        assert scenario.topology is not None
        n = task.num_clients
        self.graphs = event_graphs(scenario.topology, n, scenario.seed)
        first = self.graphs[0]
        self.edges, self.edge_rates = first.edges, np.asarray(first.rates, dtype=float)
        config = parse_algorithm_config(scenario.algorithm)
        assert isinstance(config, EventConfig)
        cls = REGISTRY[config.name]
        # DADAO's constants need χ₁(Λ) bounded over the whole cycle: take the worst graph.
        chi1 = max(g.chi1 for g in self.graphs)
        self.algorithm: EventAlgorithm = cls(  # type: ignore[call-arg]
            config,
            task,
            self.edges,
            chi1,
            Streams(scenario.seed),
            initial_model(scenario, task),
            graphs=self.graphs,
        )
        self.clocks = [_clock(g, n, config.compute_rate) for g in self.graphs]
        self.total_rate = self.clocks[0].total_rate
        self.compute_rate = config.compute_rate
        self.switch_every: float | None = None
        if len(self.graphs) > 1 and not self.algorithm.synchronous:
            # χ₁ of the probability Laplacian Λ_k / Σλ is χ₁(Λ_k) · Σλ (A1); worst over the cycle.
            self.switch_every = config.switch_every or 1.0 / max(g.chi1 * g.total_rate for g in self.graphs)
        self.rng = numpy_rng(scenario.seed, "events")
        self.counters = EventCounters()
        self.message_bytes = 8 * task.dim  # d float64 values each way per communication (A5)
        self.every_time = eval_interval(scenario)
        # Loop state (checkpointed): time of the last event or iteration, the graph index,
        # the grid's next point, the current block of draws and the position in it.
        self.t = 0.0
        self.graph_index = 0
        self.grid = TimeGrid(self.every_time, scenario.budget.time)
        self.iteration = 0
        self.block: tuple[list[float], list[float]] = ([], [])
        self.position = BLOCK

    # -- metrics, checkpoints ----------------------------------------------------------------
    def metrics_row(self, t: float) -> dict[str, Any]:
        models = self.algorithm.models_at(t)
        average = models.mean(axis=0)
        row: dict[str, Any] = asdict(self.counters)
        row["virtual_time"] = t
        row.update(self.task.evaluate(torch.from_numpy(average), self.scenario.eval.train_loss))
        row["consensus_distance"] = mean_sq_distance(models, average)
        if self.task.optimum is not None:
            optimum = self.task.optimum.numpy()
            row["mean_sq_dist_to_opt"] = mean_sq_distance(models, optimum)
            averaged = self.algorithm.averaged_models()
            if averaged is not None:
                row["averaged_sq_dist_to_opt"] = mean_sq_distance(averaged, optimum)
        row["gradient_events"] = self.counters.grad_evals
        row["communication_events"] = self.counters.communications
        if self.switch_every is not None:
            row["graph_index"] = self.graph_index % len(self.graphs)
        return row

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "kind": "events",
            "counters": asdict(self.counters),
            "algorithm": self.algorithm.state_dict(),
            "rng": self.rng.bit_generator.state,
            "block": (np.asarray(self.block[0]), np.asarray(self.block[1])),
            "loop": {
                "t": self.t,
                "graph_index": self.graph_index,
                "eval_index": self.grid.index,
                "iteration": self.iteration,
                "position": self.position,
            },
            "rows": [dict(row) for row in self.sink.rows],
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint: the rows written before it are written again first."""
        self.restore_loop(state)
        self.algorithm.load_state_dict(state["algorithm"])
        self.sink.truncate_metrics(-1)
        for row in state["rows"]:
            self.sink.append_metrics(row)

    def restore_loop(self, state: dict[str, Any]) -> None:
        """The loop's own state from a checkpoint (counters, event stream, times, grid), not
        the algorithm's: what drawing the events on from that point needs."""
        self.counters = EventCounters(**state["counters"])
        self.rng.bit_generator.state = state["rng"]
        self.block = (state["block"][0].tolist(), state["block"][1].tolist())
        loop = state["loop"]
        self.t, self.graph_index = float(loop["t"]), int(loop["graph_index"])
        self.grid.index, self.iteration = int(loop["eval_index"]), int(loop["iteration"])
        self.position = int(loop["position"])

    def _points(self, limit: float, inclusive: bool = True, stopped: bool = False) -> Iterator[Step]:
        """A step (one row each) at every grid time ≤ limit (< limit if not inclusive) and ≤ budget.time.

        After the loop has stopped, ``stopped=True``: a checkpoint there would resume into the
        loop past its stopping test (a gradient budget is checked after an event).
        """
        for t in self.grid.due(limit, inclusive):
            self.counters.round += 1
            yield Step(self.counters.round, t, may_checkpoint=not stopped)

    # -- the loops -------------------------------------------------------------------------
    def _sync_counters(self, t: float, events: int, grads: int, comms: int) -> None:
        c = self.counters
        c.virtual_time, c.events, c.grad_evals, c.communications = t, events, grads, comms
        c.bytes_up = c.bytes_down = 2 * self.message_bytes * comms

    def _run_events(self) -> Iterator[Step]:
        """The superposed Poisson process, one draw per event (or per crossed switch time)."""
        n = self.task.num_clients
        on_compute, on_edge = self.algorithm.on_compute, self.algorithm.on_edge
        budget = self.scenario.budget
        budget_time = budget.time if budget.time is not None else math.inf
        grad_limit = budget.gradients if budget.gradients is not None else math.inf
        comm_limit = budget.communications if budget.communications is not None else math.inf
        period = self.switch_every
        c = self.counters
        t, events, grads, comms = self.t, c.events, c.grad_evals, c.communications
        graph_index, position = self.graph_index, self.position
        exps, uniforms = self.block
        clock = self.clocks[graph_index % len(self.clocks)]
        inverse_rate, cumulative, edges = 1.0 / clock.total_rate, clock.cumulative, clock.rates.edges
        next_switch = (graph_index + 1) * period if period is not None else math.inf
        next_eval = self.grid.next_time
        while True:
            if position >= BLOCK:
                exps = self.rng.standard_exponential(BLOCK).tolist()
                uniforms = self.rng.random(BLOCK).tolist()
                self.block, position = (exps, uniforms), 0
            t_next = t + exps[position] * inverse_rate
            if t_next >= next_switch or next_eval <= t_next:
                # Rare: bring the loop state into self, evaluate, maybe switch the graph.
                self.t, self.graph_index, self.position = t, graph_index, position
                self._sync_counters(t, events, grads, comms)
                if t_next >= next_switch:
                    yield from self._points(next_switch)
                    if next_switch >= budget_time:
                        break
                    t = next_switch
                    graph_index += 1
                    clock = self.clocks[graph_index % len(self.clocks)]
                    inverse_rate, cumulative = 1.0 / clock.total_rate, clock.cumulative
                    edges = clock.rates.edges
                    next_switch = (graph_index + 1) * period  # type: ignore[operator]
                    position += 1  # the crossing draw is discarded (memoryless restart)
                    next_eval = self.grid.next_time
                    continue
                yield from self._points(t_next)
                next_eval = self.grid.next_time
            if t_next >= budget_time:
                break
            t = t_next
            choice = bisect_right(cumulative, uniforms[position])
            position += 1
            if choice < n:
                on_compute(choice, t)
                grads += 1
            else:
                i, j = edges[choice - n]
                on_edge(i, j, t)
                comms += 1
            events += 1
            if grads >= grad_limit or comms >= comm_limit:
                break
        self.t, self.graph_index, self.position = t, graph_index, position
        self._sync_counters(t, events, grads, comms)

    def _run_synchronous(self) -> Iterator[Step]:
        """Iteration k + 1 ends at (k + 1)/compute_rate; grid points before it see iteration k."""
        algorithm = self.algorithm
        assert isinstance(algorithm, SynchronousEventAlgorithm)
        budget = self.scenario.budget
        c = self.counters
        while True:
            t_next = (self.iteration + 1) / self.compute_rate
            yield from self._points(t_next, inclusive=False)
            if budget.time is not None and t_next > budget.time:
                break
            cost = algorithm.step(self.iteration)
            self.iteration += 1
            self.t = t_next
            c.virtual_time = t_next
            c.events += 1
            c.grad_evals += cost.gradients
            c.communications += cost.communications
            c.bytes_up += cost.bytes_sent
            c.bytes_down += cost.bytes_sent
            if (budget.gradients is not None and c.grad_evals >= budget.gradients) or (
                budget.communications is not None and c.communications >= budget.communications
            ):
                break

    # -- the run loop's hooks ---------------------------------------------------------------
    def first_point(self) -> float:
        """A fresh run's first row is at time 0."""
        return 0.0

    def steps(self) -> Iterator[Step]:
        """The clocks' loop, then the grid points up to the end, then a last row at the end itself."""
        yield from self._run_synchronous() if self.algorithm.synchronous else self._run_events()
        budget_time = self.scenario.budget.time
        end = budget_time if budget_time is not None else self.t
        yield from self._points(end, stopped=True)
        self.counters.virtual_time = end
        if self.sink.rows[-1]["virtual_time"] < end:
            self.counters.round += 1
            yield Step(self.counters.round, end, may_checkpoint=False)

    def run(self) -> dict[str, Any]:
        """Run (or continue after :meth:`restore`) to the budget; returns the last row.

        Every step is an evaluation point, so every step gets a row, and ``checkpoint.every``
        counts rows.
        """
        cadence = Cadence(expected_rows(self.scenario), 1, self.scenario.checkpoint.every)
        RunLoop(self, cadence, self.sink, self.progress).run()
        return self.sink.rows[-1]


def expected_rows(scenario: Scenario) -> int:
    """Rows after the first on the evaluation grid (0 when only a count budget ends the run)."""
    budget_time = scenario.budget.time
    return int(np.ceil(budget_time / eval_interval(scenario))) if budget_time else 0


def eval_interval(scenario: Scenario) -> float:
    """``eval.every_time``, or a twentieth of the time budget (of 1 without one)."""
    return scenario.eval.every_time or (scenario.budget.time or 1.0) / 20


def node_state(algorithm: Any, node: int) -> dict[str, np.ndarray]:
    """Copies of one node's rows of every per-node state array of an event algorithm."""
    n = algorithm.num_nodes
    out = {}
    for name in algorithm.state_fields:
        array = getattr(algorithm, name)
        if isinstance(array, np.ndarray) and array.ndim and array.shape[0] == n:
            out[name] = np.array(array[node], copy=True)
    return out


def set_node_state(algorithm: Any, node: int, state: dict[str, np.ndarray]) -> None:
    """Overwrite one node's rows with ``state`` (the inverse of :func:`node_state`)."""
    for name, value in state.items():
        getattr(algorithm, name)[node] = value
