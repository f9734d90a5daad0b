"""The one place that maps an algorithm's mode to its driver and its backend per kind.

An algorithm declares a ``mode`` (``sync``, ``buffered``, ``gossip`` or ``events``). This
table says which driver runs it and which backend hosts its work for each backend kind
(``local``, ``ray``), so :mod:`flsim.api` runs any scenario with :func:`execute` without
branching on modes, and which optional sections it reads, so validation refuses a section
the mode would ignore. Adding a driver mode or a backend kind means one entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flsim.config.errors import ConfigError
from flsim.config.schema import Scenario
from flsim.config.sections import register_check
from flsim.engine.buffered import BufferedSimulation
from flsim.engine.event_driver import run_events, run_wall_clock
from flsim.engine.gossip import GossipSimulation
from flsim.engine.simulation import RoundSimulation
from flsim.hosts.sinks import Progress, Writer
from flsim.tasks.base import Task


def _local_clients(scenario: Scenario, task: Task) -> Any:
    from flsim.backends.local import LocalBackend

    return LocalBackend(scenario, task)


def _ray_clients(scenario: Scenario, task: Task) -> Any:
    from flsim.backends.ray_backend import RayBackend

    return RayBackend(scenario)


def _local_nodes(scenario: Scenario, task: Task) -> Any:
    from flsim.backends.local import LocalNodeBackend

    return LocalNodeBackend(scenario, task)


def _ray_nodes(scenario: Scenario, task: Task) -> Any:
    from flsim.backends.ray_backend import RayNodeBackend

    return RayNodeBackend(scenario)


def _local_coordinator(scenario: Scenario, task: Task, writer: Writer, progress: Progress) -> Any:
    from flsim.backends.local import LocalEventCoordinator

    return LocalEventCoordinator(scenario, task, writer, progress)


def _ray_coordinator(scenario: Scenario, task: Task, writer: Writer, progress: Progress) -> Any:
    from flsim.backends.ray_parallel_events import RayEventRunner

    return RayEventRunner(scenario, task, writer, progress)  # backend.event_parallelism decides


@dataclass(frozen=True)
class Mode:
    """A driver mode: the driver class (round-based modes), a backend factory per kind, and
    the optional scenario sections its driver reads.

    For ``events`` the factories build an event coordinator; for the others, the client
    pool or node pool the driver hands its batches to. ``reads`` names the sections that
    only some drivers use (``topology``, ``time.wall``, ``compression.choco``,
    ``compression.downlink``): a scenario that sets one its mode does not read is refused
    by :func:`check_mode_sections` instead of being run without it.
    """

    name: str
    driver: type[RoundSimulation] | type[GossipSimulation] | None
    backends: Mapping[str, Callable[..., Any]]
    reads: frozenset[str] = frozenset()


CLIENTS = {"local": _local_clients, "ray": _ray_clients}

MODES: dict[str, Mode] = {
    "sync": Mode("sync", RoundSimulation, CLIENTS, frozenset({"compression.downlink"})),
    "buffered": Mode("buffered", BufferedSimulation, CLIENTS),
    "gossip": Mode(
        "gossip",
        GossipSimulation,
        {"local": _local_nodes, "ray": _ray_nodes},
        frozenset({"topology", "compression.choco"}),
    ),
    "events": Mode(
        "events",
        None,
        {"local": _local_coordinator, "ray": _ray_coordinator},
        frozenset({"topology", "time.wall"}),
    ),
}


def mode_of(scenario: Scenario) -> Mode:
    """The mode of the scenario's algorithm (``sync`` for a name the registry lacks)."""
    from flsim.algorithms import REGISTRY

    algorithm = REGISTRY.get(scenario.algorithm.get("name", ""))
    return MODES[getattr(algorithm, "mode", "sync")]


def check_mode_sections(scenario: Scenario) -> None:
    """A section that the algorithm's mode would ignore is an error, not a silent no-op.

    Registered as the scenario's ``mode`` check; it runs after the ``algorithm`` check, so
    the algorithm's name is known to be registered.
    """
    name, mode = scenario.algorithm["name"], mode_of(scenario)
    if scenario.topology is not None and "topology" not in mode.reads:
        reason = f"{name!r} is a {mode.name!r} algorithm and ignores the topology; remove the section"
        raise ConfigError("topology", scenario.topology.kind or scenario.topology.file, reason)
    if scenario.time == "wall" and "time.wall" not in mode.reads:
        reason = f"wall-clock mode runs event-driven algorithms, not {mode.name!r} ones"
        raise ConfigError("time", "wall", reason)
    choco, downlink = scenario.compression.choco, scenario.compression.downlink
    if choco is not None and "compression.choco" not in mode.reads:
        reason = f"CHOCO corrects gossip between nodes; {name!r} is a {mode.name!r} algorithm"
        raise ConfigError("compression.choco", choco.model_dump(), reason)
    if downlink is not None and "compression.downlink" not in mode.reads:
        reason = f"a compressed downlink is supported by the synchronous driver only, not {mode.name!r}"
        raise ConfigError("compression.downlink", downlink.kind, reason)
    _check_backend_switches(scenario, name, mode)


def _check_backend_switches(scenario: Scenario, name: str, mode: Mode) -> None:
    """``on`` asks for something the run would not do: say so instead of running without it.

    ``auto`` (the default) and ``off`` stay valid everywhere, so one backend section can serve
    a sweep over algorithms.
    """
    if scenario.backend.event_parallelism != "on":
        return
    if mode.name != "events":
        reason = f"parallel event runs apply to event-driven algorithms; {name!r} is a {mode.name!r} one"
        raise ConfigError("backend.event_parallelism", "on", reason)
    if scenario.backend.kind != "ray":
        reason = "the embedded backend runs events in one process; parallel event runs need backend.kind: ray"
        raise ConfigError("backend.event_parallelism", "on", reason)


register_check("mode", check_mode_sections)


def driver_class(scenario: Scenario) -> type[RoundSimulation] | type[GossipSimulation]:
    """The round-based driver of the scenario (tests step it round by round)."""
    driver = mode_of(scenario).driver
    if driver is None:
        raise ValueError(f"{scenario.algorithm.get('name')!r} is event-driven and has no round driver")
    return driver


def make_backend(scenario: Scenario, task: Task) -> Any:
    """The client pool or node pool of a round-based scenario, for its backend kind."""
    return mode_of(scenario).backends[scenario.backend.kind](scenario, task)


def execute(
    scenario: Scenario, task: Task, writer: Writer, progress: Progress, resumed: bool, summary: dict[str, Any]
) -> dict[str, Any]:
    """Run a federated scenario to its end; returns the last row and fills ``summary`` facts.

    ``summary`` is updated in place as facts become known (placement before the run), so a
    run that fails still reports where it ran.
    """
    mode = mode_of(scenario)
    if mode.driver is None:
        writer.truncate_metrics(-1)  # a restored checkpoint writes its rows again
        if scenario.time == "wall":
            summary.update(run_wall_clock(scenario, task, writer))
            return writer.read_metrics()[-1]
        final, facts = run_events(scenario, task, writer, progress, mode.backends[scenario.backend.kind])
        summary.update(facts)
        return final
    return _run_rounds(mode, scenario, task, writer, progress, resumed, summary)


def _run_rounds(
    mode: Mode,
    scenario: Scenario,
    task: Task,
    writer: Writer,
    progress: Progress,
    resumed: bool,
    summary: dict[str, Any],
) -> dict[str, Any]:
    """A round-based run on its backend, restored from a checkpoint when resuming."""
    assert mode.driver is not None
    backend = mode.backends[scenario.backend.kind](scenario, task)
    try:
        backend.start()
        simulation = mode.driver(scenario, task, backend, writer, progress)
        summary.update(simulation.summary_facts())
        checkpoint = writer.load_checkpoint() if resumed else None
        if checkpoint is not None:
            simulation.restore(checkpoint)
            writer.truncate_metrics(simulation.counters.round)
        elif resumed:
            writer.truncate_metrics(-1)
        summary["placement"] = backend.describe()  # kept if the run fails
        final = simulation.run()
        # Placement after the run: actors replaced after a loss are the ones listed.
        summary["placement"] = backend.describe()
        summary["recoveries"] = simulation.recoveries
        return final
    finally:
        backend.shutdown()
