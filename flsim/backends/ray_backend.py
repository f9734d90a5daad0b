"""The Ray backend: a small pool of actors, each hosting many clients or nodes (docs/architecture.md §4).

* Client (or node) c lives on actor ``c % pool_size`` for the whole run, so its persistent
  state (control variates, duals, error buffers, x_i) never leaves that actor between rounds.
* The server role of a round-based run is one more actor (:class:`RayServer`) that holds the
  algorithm's server state. Its broadcast is an object reference handed straight to the
  client actors; each client actor returns the accounting of its replies (small) to the
  driver and its batch's reply payloads as one object, whose reference the driver passes on
  to the server actor. The driver never deserializes a model: it only schedules. (Ray keeps
  payloads under 100 KB in the owner's, i.e. the driver's, memory store; larger ones go
  actor to actor through the object store.)
* Each actor builds the task from the scenario itself: no dataset crosses the network.
* A round's broadcast is put in the object store once (``ray.put``) and every actor reads
  the same reference; gossip vectors move between actors as object references.
* Every remote wait has a timeout (``backend.timeout_s``; ``backend.startup_timeout_s`` while
  actors start): no silent hangs.
* Actors are generic workers, configured per run. Within one Ray session they are pooled
  and reused by later runs (a sweep, a test module), which saves a process start and a torch
  import per actor per run. A pool lives as long as its Ray session.

The results are bit-identical to the local backend because an update depends only on its
inputs and on generators derived from the seed, and every actor runs torch with the same
thread count and deterministic kernels.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from typing import Any

from flsim.algorithms.base import Reply, Tensors
from flsim.backends.base import Backend, WorkerLost
from flsim.config.errors import ConfigError, ConfigErrors, clip
from flsim.config.schema import Scenario
from flsim.hosts.frozen_heap import freeze_heap, unfreeze_heap

log = logging.getLogger("flsim.ray")


@dataclasses.dataclass(frozen=True)
class _Payload:
    """Where a reply's payload lives on Ray: item ``index`` of the batch object ``batch``.

    A client actor returns its batch's payloads as one object: fetching one object per actor
    costs one transfer, where an object per reply cost a round trip each (Ray's per-object
    overhead dominates for models of a few thousand parameters).
    """

    batch: Any  # ray.ObjectRef to a list of Tensors
    index: int


def _with_payloads(replies: list[Reply], fetch: Callable[[list[Any]], list[Any]]) -> list[Reply]:
    """``replies`` with every :class:`_Payload` fetched (by ``fetch``, each batch once).

    Payloads restored from a checkpoint are tensors already and stay as they are.
    """
    batches: list[Any] = []
    for reply in replies:
        if isinstance(reply.message, _Payload) and reply.message.batch not in batches:
            batches.append(reply.message.batch)
    fetched = dict(zip(batches, fetch(batches), strict=True))
    return [
        dataclasses.replace(r, message=fetched[r.message.batch][r.message.index])
        if isinstance(r.message, _Payload)
        else r
        for r in replies
    ]


class _Worker:
    """The actor body. For one run it plays one role: ``clients`` (a :class:`ClientHost`),
    ``nodes`` (a :class:`NodeHost`), ``server`` (a :class:`ServerCore`), ``events`` (a
    coordinator, whose :class:`StreamedEventRun` starts with :meth:`start_events`) or
    ``event_part`` (an :class:`EventPart` of a parallel event run, called through :meth:`part`)."""

    def __init__(self) -> None:
        self.host: Any = None
        self.nodes: list[int] = []
        self.timeout: float | None = None
        #: Whether this role froze the heap (:mod:`flsim.hosts.frozen_heap`); ``release`` thaws it.
        self.frozen = False

    def configure(self, role: str, scenario_data: dict[str, Any], nodes: list[int]) -> None:
        from flsim.backends.actor_scenario import scenario_from_data
        from flsim.hosts.client_host import ClientHost, configure_torch
        from flsim.hosts.node_host import NodeHost
        from flsim.hosts.server import ServerCore

        self.release()
        scenario = scenario_from_data(scenario_data)  # registers sections, loads plugins
        configure_torch(scenario.backend.torch_threads)
        self.timeout = scenario.backend.timeout_s
        if role == "clients":
            self.host = ClientHost(scenario)
        elif role == "nodes":
            self.host = NodeHost(scenario)
        elif role == "server":
            self.host = ServerCore(scenario)
        elif role == "event_part":
            from flsim.hosts.event_parts import EventPart
            from flsim.tasks import build_task

            self.host = EventPart(scenario, build_task(scenario.task, scenario.seed), nodes)
        self.nodes = nodes
        freeze_heap()  # a role's calls make garbage; its setup and imports need no re-walking
        self.frozen = True

    def part(self, method: str, *args: Any) -> Any:
        """A call on this actor's share of a parallel event run (``event_part`` role)."""
        return getattr(self.host, method)(*args)

    # -- the coordinator role -------------------------------------------------------------
    def start_events(self, scenario_data: dict[str, Any], checkpoint: dict[str, Any] | None) -> None:
        """Start a whole event-driven simulation on a thread of this actor."""
        from flsim.backends.ray_events import StreamedEventRun

        self.host = StreamedEventRun(scenario_data, checkpoint)

    def poll_events(self, wait: float) -> list[tuple[str, Any]]:
        return self.host.poll(wait)

    def release(self) -> None:
        """Drop the run's state (and any spilled client state on disk)."""
        if self.host is not None and hasattr(self.host, "close"):
            self.host.close()
        self.host = None
        if self.frozen:
            unfreeze_heap()
            self.frozen = False

    # -- clients --------------------------------------------------------------------------
    def run_clients(
        self, message: Tensors, clients: list[int], round_index: int, stream: int | None = None
    ) -> tuple[list[Reply], list[Tensors]]:
        """(the replies' accounting without payloads, their payloads).

        Called with ``num_returns=2``: the payloads become an object of their own, which the
        driver hands to the server actor without fetching it.
        """
        replies = self.host.run_clients(message, clients, round_index, stream)
        return [dataclasses.replace(r, message={}) for r in replies], [r.message for r in replies]

    # -- the server role --------------------------------------------------------------------
    def _with_payloads(self, replies: list[Reply]) -> list[Reply]:
        import ray

        return _with_payloads(replies, lambda refs: ray.get(refs, timeout=self.timeout))

    def init_phase(self, clients: list[int]) -> tuple[Tensors | None, dict[int, int]]:
        return self.host.init_phase(clients)

    def finish_init_phase(self, replies: list[Reply]) -> None:
        self.host.finish_init_phase(self._with_payloads(replies))

    def broadcast(self, round_index: int, clients: list[int]) -> tuple[Tensors, dict[int, int]]:
        return self.host.broadcast(round_index, clients)

    def aggregate(self, replies: list[Reply], round_index: int) -> None:
        self.host.aggregate(self._with_payloads(replies), round_index)

    def evaluate(self, train_loss: bool) -> dict[str, Any]:
        return self.host.evaluate(train_loss)

    def export_server(self) -> dict[str, Any]:
        return self.host.export_state()

    def import_server(self, state: dict[str, Any]) -> None:
        self.host.import_state(state)

    # -- decentralized nodes --------------------------------------------------------------
    def current(self) -> dict[int, Any]:
        return self.host.current(self.nodes)

    def local(self, round_index: int, *inputs: dict[int, Any]) -> tuple[dict[int, Any], list[Any]]:
        merged: dict[int, Any] | None = None
        if inputs:
            merged = {}
            for part in inputs:
                merged.update(part)
        return self.host.local(self.nodes, round_index, merged)

    def mix(
        self, rows: dict[int, list[tuple[int, float]]], stream: int, *vector_sets: dict[int, Any]
    ) -> dict[int, Any]:
        return self.host.mix(rows, stream, *vector_sets)

    def publish(self, stream: int, vectors: dict[int, Any]) -> dict[int, Any]:
        return self.host.publish(stream, vectors)

    def choco_mix(
        self, rows: dict[int, list[tuple[int, float]]], own: dict[int, Any], *hat_sets: dict[int, Any]
    ) -> dict[int, Any]:
        return self.host.choco_mix(rows, own, *hat_sets)

    def finish(self, mixed: dict[int, Any], round_index: int) -> None:
        self.host.finish(mixed, round_index)

    # -- state and placement --------------------------------------------------------------
    def export_states(self) -> dict[int, Tensors]:
        return self.host.export_states()

    def import_states(self, states: dict[int, Tensors]) -> None:
        self.host.import_states(states)

    def placement(self) -> dict[str, Any]:
        import ray

        return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}


#: The ``backend`` key that bounds starting and configuring actors.
STARTUP = "startup_timeout_s"

#: Idle workers of the current Ray session, by CPUs per actor (see the module docstring).
_IDLE: dict[tuple[str, str, float], list[Any]] = {}


def user_error(exc: BaseException) -> ConfigError | ConfigErrors | None:
    """The :class:`ConfigError` (or :class:`ConfigErrors`) an actor raised, out of Ray's
    task error, so the CLI reports it as bad input (exit 2, one line) without the actor's
    traceback; ``None`` for any other failure."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, ConfigError | ConfigErrors) else None


def release_idle_workers() -> None:
    """Kill pooled idle actors so that their CPUs are free for Ray tasks (sweeps)."""
    import ray

    for actors in _IDLE.values():
        for actor in actors:
            try:
                ray.kill(actor)
            except Exception:  # a handle from an ended session: its actor is already gone
                continue
    _IDLE.clear()


def _release_other_sizes(key: tuple[str, str, float]) -> None:
    """Kill the pooled idle actors of other sizes before new actors are started: each still
    reserves its CPUs, so a run asking for another ``cpus_per_actor`` could otherwise wait
    for CPUs that only idle actors hold, until ``backend.startup_timeout_s``."""
    import ray

    for other in [k for k in _IDLE if k != key]:
        for actor in _IDLE.pop(other):
            try:
                ray.kill(actor)
            except Exception:  # a handle from an ended session: its actor is already gone
                continue


def _session_key(cpus: float) -> tuple[str, str, float]:
    """Pooled actors are reused only within one Ray session.

    Job ids restart at the same value in every new local cluster, so the driver's node id
    (random per cluster) is part of the key: a handle from an ended session is never reused.
    """
    import ray

    context = ray.get_runtime_context()
    return (context.get_node_id(), context.get_job_id(), cpus)


def plugin_options(scenario: Scenario) -> dict[str, Any]:
    """``ray.remote`` options that ship the scenario's plugin modules to the actors.

    The runtime environment's ``py_modules`` carries each plugin module not installed in
    site-packages, so an actor can import a plugin that lives only next to the scenario, on
    a local cluster as on a remote one. Call after :func:`init_ray`.
    """
    from flsim.config.plugins import shippable_paths

    paths = tuple(shippable_paths(scenario.plugins))
    if not paths:
        return {}
    key = (*_session_key(0.0), *paths)  # uploads live as long as the session
    if key not in _UPLOADED:
        _UPLOADED[key] = _upload_py_modules(list(paths))
    return {"runtime_env": {"py_modules": _UPLOADED[key]}}


#: Plugin paths already uploaded to this session's object store, and their URIs.
_UPLOADED: dict[tuple[Any, ...], list[str]] = {}


def _upload_py_modules(paths: list[str]) -> list[str]:
    """Upload local plugin modules once and return their ``gcs://`` URIs.

    Ray accepts local paths in ``py_modules`` only in ``ray.init``'s job-level environment,
    but a session may already exist (a sweep's, a test module's); an actor's environment
    takes URIs, so this does the upload that ``ray.init`` would do (Ray's own helper).
    """
    import inspect

    import ray
    from ray._private.runtime_env.py_modules import upload_py_modules_if_needed

    node = ray._private.worker.global_worker.node
    kwargs: dict[str, Any] = {"scratch_dir": node.get_runtime_env_dir_path()}
    if "include_gitignore" in inspect.signature(upload_py_modules_if_needed).parameters:
        kwargs["include_gitignore"] = True
    return upload_py_modules_if_needed({"py_modules": paths}, **kwargs)["py_modules"]


#: What to check when nobody answers at the address.
_ADDRESS_HINT = "check the address (`ray start --head` prints it; `ray status` on the head confirms it)"
#: What to check when the head answers but joining fails: in practice, token auth.
_AUTH_HINT = (
    "the cluster uses token auth: set RAY_AUTH_MODE=token (the token is in ~/.ray/auth_token on the head, "
    "or pass RAY_AUTH_TOKEN)"
)


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``host:port`` or ``ray://host:port``; ``None`` for ``auto``/``local``."""
    text = address.removeprefix("ray://")
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def check_ray_address(address: str | None, timeout_s: float) -> None:
    """Fail fast on an address nobody listens at, before a run directory or a Ray session exists.

    ``ray.init`` retries an unreachable GCS for minutes; one TCP connect bounded by
    ``backend.connect_timeout_s`` answers the common mistakes (wrong host, wrong port) at once.
    """
    import socket

    address = address or os.environ.get("RAY_ADDRESS") or None
    target = _host_port(address) if address else None
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=timeout_s).close()
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
        raise ConfigError(
            "backend.address",
            address,
            f"cannot be reached within {timeout_s:g} s ({reason}): {_ADDRESS_HINT}",
        ) from None
    if not address.startswith("ray://"):
        _check_gcs_auth(address)


def _check_gcs_auth(address: str) -> None:
    """Ask the head's GCS for its cluster id once: a token mismatch shows in under a second.

    ``ray.init`` would retry the same refused request for about 20 s, logging each attempt.
    """
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    try:
        GcsClient(address=address)
    except AuthenticationError:
        raise ConfigError("backend.address", address, f"refused the connection: {_AUTH_HINT}") from None


def init_ray(address: str | None, num_cpus: int | None = None, connect_timeout_s: float = 30.0) -> bool:
    """Join ``address`` or start a quiet local instance; returns whether we started it.

    A session that already exists (a test module's) is reused. Without ``address``, the
    ``RAY_ADDRESS`` environment variable names the cluster to join: ``ray job submit`` sets
    it for the job's entrypoint, and a user may set it on purpose. Only when neither is
    given is a fresh local instance started (``address="local"`` never attaches to a
    cluster that some other process happens to run on this machine).
    """
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    _IDLE.clear()  # handles from an earlier session are dead
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
        "configure_logging": True,
    }
    if address:
        check_ray_address(address, connect_timeout_s)
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, TimeoutError) as exc:  # e.g. a token-auth cluster
            raise ConfigError(
                "backend.address", address, f"could not join ({clip(str(exc), 160)}): {_AUTH_HINT}"
            ) from None
    else:
        # "local": always a fresh instance, never a cluster some other process started here.
        ray.init(address="local", num_cpus=num_cpus, **kwargs)
    return True


class _RayPool:
    """Acquires, configures, checks and returns the actors of one run.

    ``cpus`` is what each actor reserves (default ``backend.cpus_per_actor``).
    """

    def __init__(
        self, scenario: Scenario, role: str, size: int | None = None, cpus: float | None = None
    ) -> None:
        self.scenario = scenario
        self.role = role
        self.fixed_size = size
        self.cpus = scenario.backend.cpus_per_actor if cpus is None else cpus
        self.actors: list[Any] = []
        self.assignment: list[list[int]] = []
        self._owns_ray = False

    def _size(self) -> int:
        import ray

        cfg = self.scenario.backend
        size = (
            self.fixed_size
            or cfg.num_actors
            or int(ray.cluster_resources().get("CPU", 1) // cfg.cpus_per_actor)
        )
        return max(1, min(size, self.scenario.task.num_clients))

    def _get(self, refs: list[Any], limit: str = "timeout_s") -> list[Any]:
        """``ray.get`` within ``backend.<limit>``: a hang becomes a ``TimeoutError`` naming the
        key, a dead actor a :class:`WorkerLost`. Starting actors has its own, longer limit
        (``startup_timeout_s``): a process start, imports and building the task take seconds
        here and minutes on a cluster that installs a runtime environment first."""
        import ray
        from ray.exceptions import GetTimeoutError, ObjectLostError, RayActorError, RayTaskError

        timeout = getattr(self.scenario.backend, limit)
        try:
            return ray.get(refs, timeout=timeout)
        except GetTimeoutError as exc:
            raise TimeoutError(f"a Ray actor did not answer within backend.{limit}={timeout:g}s") from exc
        except (RayActorError, ObjectLostError) as exc:
            raise WorkerLost(f"a Ray actor died: {exc}") from exc
        except RayTaskError as exc:
            error = user_error(exc)
            if error is None:
                raise
            raise error from None

    def _new_actor(self) -> Any:
        import ray

        # No automatic restarts: a restarted actor would silently come back with empty state;
        # the simulation restores it from the last checkpoint instead (see ``recover``).
        # SPREAD places the pool across every node of the cluster rather than packing it.
        options = plugin_options(self.scenario)
        return ray.remote(num_cpus=self.cpus, max_restarts=0, scheduling_strategy="SPREAD", **options)(
            _Worker
        ).remote()

    def _configure(self, indices: list[int]) -> list[Any]:
        """Submit the run's configuration to these actors; returns the calls to wait on."""
        data = self.scenario.model_dump(mode="json")
        return [self.actors[i].configure.remote(self.role, data, self.assignment[i]) for i in indices]

    def launch(self) -> list[Any]:
        """Acquire the actors (pooled or new) and submit their configuration, without waiting.

        Each actor builds the task and imports torch when configured (seconds), so a backend
        with two pools launches both before it waits (see :meth:`RayBackend.start`).
        """
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        self._owns_ray = init_ray(
            self.scenario.backend.address, connect_timeout_s=self.scenario.backend.connect_timeout_s
        )
        if plugin_options(self.scenario):
            release_idle_workers()  # pooled actors lack this run's shipped plugin modules
        size = self._size()
        n = self.scenario.task.num_clients
        self.assignment = [[c for c in range(n) if c % size == a] for a in range(size)]
        idle = _IDLE.setdefault(_session_key(self.cpus), [])
        while idle and len(self.actors) < size:
            actor = idle.pop()
            try:
                ray.get(actor.placement.remote(), timeout=10)
                self.actors.append(actor)
            except (RayActorError, GetTimeoutError):
                ray.kill(actor)
            except Exception:  # a handle Ray no longer knows fails at submission, with a plain Exception
                continue
        if len(self.actors) < size:
            _release_other_sizes(_session_key(self.cpus))
        self.actors += [self._new_actor() for _ in range(size - len(self.actors))]
        return self._configure(list(range(size)))

    def start(self) -> None:
        self._get(self.launch(), STARTUP)

    def recover(self) -> None:
        """Replace every actor that no longer answers; the caller then restores the state."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        for index, actor in enumerate(self.actors):
            try:
                ray.get(actor.placement.remote(), timeout=self.scenario.backend.timeout_s)
            except (RayActorError, GetTimeoutError):
                log.warning("actor %d was lost; starting a replacement", index)
                ray.kill(actor)
                self.actors[index] = self._new_actor()
                self._get(self._configure([index]), STARTUP)

    def shutdown(self) -> None:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        if not ray.is_initialized():
            return
        try:
            self._get([actor.release.remote() for actor in self.actors])
            if not self._owns_ray:
                _IDLE.setdefault(_session_key(self.cpus), []).extend(self.actors)
        except (GetTimeoutError, RayActorError, TimeoutError, WorkerLost):
            log.warning("some actors did not release their state; killing them")
            for actor in self.actors:
                ray.kill(actor)
        self.actors = []
        if self._owns_ray:
            _IDLE.clear()
            ray.shutdown()

    def describe(self) -> dict[str, Any]:
        """Where the pool runs: recorded in ``summary.json`` so placement can be checked."""
        return {"kind": "ray", "actors": self._get([actor.placement.remote() for actor in self.actors])}

    def get_states(self) -> dict[int, Tensors]:
        merged: dict[int, Tensors] = {}
        for states in self._get([actor.export_states.remote() for actor in self.actors]):
            merged.update(states)
        return dict(sorted(merged.items()))

    def put_states(self, states: dict[int, Tensors]) -> None:
        parts = [{c: states[c] for c in owned if c in states} for owned in self.assignment]
        self._get([actor.import_states.remote(part) for actor, part in zip(self.actors, parts, strict=True)])


class RayServer(_RayPool):
    """The server role on its own actor; the driver holds only references to what it sends.

    The actor reserves no CPU: it aggregates and evaluates while the client actors wait for
    the next broadcast, so reserving one would only leave a core idle.
    """

    def __init__(self, scenario: Scenario) -> None:
        super().__init__(scenario, "server", size=1, cpus=0)

    def _call(self, method: str, *args: Any) -> Any:
        return self._get([getattr(self.actors[0], method).remote(*args)])[0]

    def init_phase(self, clients: list[int]) -> tuple[Any | None, dict[int, int]]:
        message, bytes_down = self.actors[0].init_phase.options(num_returns=2).remote(clients)
        bytes_down = self._get([bytes_down])[0]
        return (message if bytes_down else None), bytes_down  # bytes exist iff a message does

    def finish_init_phase(self, replies: list[Reply]) -> None:
        self._call("finish_init_phase", replies)

    def broadcast(self, round_index: int, clients: list[int]) -> tuple[Any, dict[int, int]]:
        message, bytes_down = self.actors[0].broadcast.options(num_returns=2).remote(round_index, clients)
        return message, self._get([bytes_down])[0]

    def aggregate(self, replies: list[Reply], round_index: int) -> None:
        self._call("aggregate", replies, round_index)

    def evaluate(self, train_loss: bool) -> dict[str, Any]:
        return self._call("evaluate", train_loss)

    def export_state(self) -> dict[str, Any]:
        return self._call("export_server")

    def import_state(self, state: dict[str, Any]) -> None:
        self._call("import_server", state)


class RayBackend(_RayPool, Backend):
    """Round-based clients on the pool (one batch per actor per round) and a server actor."""

    def __init__(self, scenario: Scenario) -> None:
        super().__init__(scenario, "clients")
        self.server = RayServer(scenario)

    def start(self) -> None:
        # The client pool may start Ray, so it launches first (and shuts down last); both
        # pools configure concurrently.
        calls = self.launch()
        self._get(calls + self.server.launch(), STARTUP)

    def server_role(self) -> RayServer:
        return self.server

    def recover(self) -> None:
        super().recover()
        self.server.recover()

    def shutdown(self) -> None:
        self.server.shutdown()
        super().shutdown()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "server": self.server.describe()["actors"][0]}

    def owner(self, client: int) -> int:
        return client % len(self.actors)

    def run_clients(
        self, message: Any, clients: list[int], round_index: int, stream: int | None = None
    ) -> list[Reply]:
        """Replies carry accounting and a reference to their payload, which stays in Ray."""
        import ray

        if not isinstance(message, ray.ObjectRef):
            message = ray.put(message)  # one copy in the object store for the whole round
        by_actor: dict[int, list[int]] = {}
        for client in clients:
            by_actor.setdefault(self.owner(client), []).append(client)
        calls = [
            self.actors[a].run_clients.options(num_returns=2).remote(message, batch, round_index, stream)
            for a, batch in sorted(by_actor.items())
        ]
        replies: dict[int, Reply] = {}
        for (_, payloads), metas in zip(calls, self._get([metas for metas, _ in calls]), strict=True):
            for index, meta in enumerate(metas):
                replies[meta.client] = dataclasses.replace(meta, message=_Payload(payloads, index))
        return [replies[client] for client in clients]

    def materialize(self, replies: list[Reply]) -> list[Reply]:
        return _with_payloads(replies, self._get)


class RayCoordinator(_RayPool):
    """One pooled actor that runs a whole sequential (event-driven) simulation on a thread.

    An actor whose run did not finish (the driver gave up, or was interrupted) is killed
    rather than pooled, since its thread would keep computing.
    """

    def __init__(self, scenario: Scenario) -> None:
        super().__init__(scenario, "events", size=1)
        self.finished = False

    def start_run(self, checkpoint: dict[str, Any] | None) -> None:
        self.finished = False
        data = self.scenario.model_dump(mode="json")
        self._get([self.actors[0].start_events.remote(data, checkpoint)])

    def poll(self, wait: float) -> list[tuple[str, Any]]:
        items = self._get([self.actors[0].poll_events.remote(wait)])[0]
        self.finished = self.finished or any(kind == "done" for kind, _ in items)
        return items

    def shutdown(self) -> None:
        if not self.finished and self.actors:
            import ray

            for actor in self.actors:
                ray.kill(actor)
            self.actors = []
        super().shutdown()


class RayNodeBackend(_RayPool):
    """Decentralized nodes on the pool. A vector set is a list of references, one per actor.

    Gossip hands those references to the actors that own the receiving nodes, so vectors
    move between actors through the object store and never through the driver; only
    evaluation gathers them.
    """

    def __init__(self, scenario: Scenario) -> None:
        super().__init__(scenario, "nodes")

    def current(self) -> list[Any]:
        return [actor.current.remote() for actor in self.actors]

    def local(self, round_index: int, inputs: list[Any] | None) -> tuple[list[Any], list[Any]]:
        pairs = [
            actor.local.options(num_returns=2).remote(round_index, *([inputs[a]] if inputs else []))
            for a, actor in enumerate(self.actors)
        ]
        work = [item for batch in self._get([work_ref for _, work_ref in pairs]) for item in batch]
        return [vector_ref for vector_ref, _ in pairs], sorted(work, key=lambda w: w.node)

    def mix(self, rows: dict[int, list[tuple[int, float]]], vectors: list[Any], stream: int) -> list[Any]:
        """One gossip step, as references: each actor mixes for the nodes it owns.

        With CHOCO each actor first publishes its nodes' x̂ (one more call per actor); the
        receivers then read every actor's x̂ set and their own z. Nothing waits here.
        """
        owned_rows = [{node: rows[node] for node in owned if node in rows} for owned in self.assignment]
        if self.scenario.compression.choco is None:
            pairs = zip(self.actors, owned_rows, strict=True)
            return [actor.mix.remote(part, stream, *vectors) for actor, part in pairs]
        hats = [actor.publish.remote(stream, mine) for actor, mine in zip(self.actors, vectors, strict=True)]
        return [
            actor.choco_mix.remote(part, mine, *hats)
            for actor, part, mine in zip(self.actors, owned_rows, vectors, strict=True)
        ]

    def finish(self, mixed: list[Any], round_index: int) -> None:
        pairs = zip(self.actors, mixed, strict=True)
        self._get([actor.finish.remote(part, round_index) for actor, part in pairs])

    def gather(self, vectors: list[Any]) -> dict[int, Any]:
        merged: dict[int, Any] = {}
        for part in self._get(list(vectors)):
            merged.update(part)
        return dict(sorted(merged.items()))
