"""A client host: the unit of work placement, in process or inside a Ray actor.

A host builds the task and the algorithm from the scenario itself (deterministically, so
no dataset is shipped over the network), owns the persistent state of the clients it is
given, and runs their updates. The local backend has one host; the Ray backend has one per
actor. Because a client's update depends only on (message, its state, its data, its
``("client", id, round)`` generator), the result is the same on any host.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flsim.algorithms.base import Reply, RoundAlgorithm, Tensors, parse_algorithm_config, tensor_bytes
from flsim.algorithms.client import ClientContext
from flsim.algorithms.client_optimizers import run_with_optimizer_state
from flsim.config.schema import Scenario
from flsim.hosts.channels import send_uplink, uplink_channel
from flsim.hosts.state_store import ClientStateStore
from flsim.hosts.vectorized import ClientWork, VectorizedClients, check_vectorized
from flsim.rng import Streams, torch_rng
from flsim.tasks import build_task
from flsim.tasks.base import Task
from flsim.tasks.lazy_clients import configure_client_cache, prefetch_clients


def configure_torch(threads: int) -> None:
    """Same intra-op thread count and deterministic kernels on every worker (docs/architecture.md §3).

    ``torch.use_deterministic_algorithms`` also imports ``torch._inductor`` (seconds of start-up
    per process, paid by every Ray actor and every run) only to set a compiler flag flsim
    never uses; the kernel switch itself is the C-level call below, which is what it wraps.
    """
    torch.set_num_threads(threads)
    if not torch.are_deterministic_algorithms_enabled():
        torch._C._set_deterministic_algorithms(True, warn_only=False)


def build_algorithm(scenario: Scenario, task: Task) -> RoundAlgorithm:
    from flsim.algorithms import REGISTRY

    config = parse_algorithm_config(scenario.algorithm)
    return REGISTRY[config.name](
        config,
        task.num_clients,
        task.client_sizes(),
        streams=Streams(scenario.seed),
        clients_per_round=scenario.expected_participants(),
    )


def initial_model(scenario: Scenario, task: Task) -> Tensor:
    return task.objective.init_params(torch_rng(scenario.seed, "init"))


class ClientHost:
    def __init__(self, scenario: Scenario, task: Task | None = None) -> None:
        configure_torch(scenario.backend.torch_threads)
        self.scenario = scenario
        self.task = task if task is not None else build_task(scenario.task, scenario.seed)
        configure_client_cache(self.task, scenario.backend)
        self.algorithm = build_algorithm(scenario, self.task)
        x0 = initial_model(scenario, self.task)
        self.uplink = uplink_channel(scenario.compression)
        budget_mb = scenario.backend.state_memory_mb
        self.store = ClientStateStore(
            lambda client: self.algorithm.init_client(client, x0),
            memory_budget_bytes=None if budget_mb is None else int(budget_mb * 2**20),
            spill_dir=scenario.backend.state_dir,
        )
        gradient = check_vectorized(scenario, self.algorithm, self.task)
        self.vectorized = (
            None if gradient is None else VectorizedClients(scenario, self.task, self.algorithm, gradient)
        )

    def run_clients(
        self, message: Tensors, clients: list[int], round_index: int, stream: int | None = None
    ) -> list[Reply]:
        """Run each client's update; ``stream`` keys its minibatch generator (default: the round).

        The buffered driver runs a client several times per server version, so it passes a
        dispatch counter as ``stream`` to give every job its own ``("client", id, stream)`` draws.
        With ``backend.vectorize`` the clients run as stacks (:mod:`flsim.hosts.vectorized`).
        """
        counter = round_index if stream is None else stream
        prefetch_clients(self.task, clients)
        if self.vectorized is None:
            return [self._run_one(message, client, round_index, counter) for client in clients]
        update = self.algorithm.client_update_batched  # type: ignore[attr-defined]
        stored = {client: self.store.get(client) for client in clients}
        done = self.vectorized.run(
            clients,
            round_index,
            counter,
            lambda group, bctx: update(message, [stored[c] for c in group], bctx),
        )
        return [
            self._reply(client, out, state, stored[client], counter, work, extras)
            for client, out, state, work, extras in done
        ]

    def _run_one(self, message: Tensors, client: int, round_index: int, counter: int) -> Reply:
        cfg = self.algorithm.config
        ctx = ClientContext(
            client=client,
            shard=self.task.clients[client],
            objective=self.task.objective,
            generator=torch_rng(self.scenario.seed, "client", client, counter),
            batch_size=None if cfg.batch_size == "full" else int(cfg.batch_size),
            lr=cfg.round_lr(round_index),
            round_index=round_index,
        )
        stored = self.store.get(client)
        out, state = run_with_optimizer_state(self.algorithm.client_update, message, stored, ctx)
        work = ClientWork(ctx.num_samples, ctx.grad_evals, ctx.steps, ctx.work)
        return self._reply(client, out, state, stored, counter, work, dict(ctx.extras))

    def _reply(
        self,
        client: int,
        out: Tensors,
        state: Tensors,
        stored: Tensors,
        counter: int,
        work: ClientWork,
        extras: dict[str, float],
    ) -> Reply:
        """The uplink (compression draws from the client's own stream), the stored state, the reply.

        ``stored`` is the client's state from before this update: the channel's error feedback
        lives there, whatever the update returned."""
        if self.uplink is None:  # uncompressed: nothing is drawn, so no generator is seeded
            bytes_up = tensor_bytes(out)
        else:
            compression_rng = torch_rng(self.scenario.seed, "compression.uplink", client, counter)
            out, state, bytes_up = send_uplink(self.uplink, out, state, stored, compression_rng)
        self.store.put(client, state)
        return Reply(
            client=client,
            message=out,
            num_samples=work.num_samples,
            grad_evals=work.grad_evals,
            local_steps=work.local_steps,
            work=work.work,
            bytes_up=bytes_up,
            extras=extras,
        )

    def export_states(self) -> dict[int, Tensors]:
        return self.store.export()

    def import_states(self, states: dict[int, Tensors]) -> None:
        self.store.load(states)

    def close(self) -> None:
        """Release the client states (and the store's spill directory, if any)."""
        self.store.close()
