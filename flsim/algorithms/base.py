"""The round-based algorithm contract and the registry.

An algorithm is a class with typed hyperparameters and *pure* update functions over flat
tensors (docs/architecture.md §5):

* ``broadcast(server, round)``: what the server sends down (the same for every client);
* ``client_update(message, state, ctx)``: one client's local work, returning its reply and
  new persistent state. It may only use ``ctx`` for data and randomness, so it runs the
  same in process or on a Ray actor;
* ``aggregate(server, replies, round)``: the server update, fed replies in client-id order.

Where and when these run is the engine's and backend's business, never the algorithm's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator
from torch import Tensor

from flsim.algorithms.client import ClientContext, local_sgd
from flsim.algorithms.client_optimizers import (
    ClientOptimizerConfig,
    SGDOptions,
    is_plain_sgd,
    optimizer_training,
    without_union_tags,
)
from flsim.rng import SEED_0_STREAMS, Streams

Tensors = dict[str, Tensor]
#: How the server averages clients (B1): by sample count, or a plain mean over clients.
Weighting = Literal["samples", "uniform"]


class AlgorithmConfig(BaseModel):
    """Hyperparameters shared by every round-based algorithm (the client optimizer).

    ``local_steps`` and ``local_epochs`` are mutually exclusive: docs/algorithms.md requires the
    config to say which one K counts. ``batch_size: full`` means full local gradients.
    ``weighting`` defaults to ``samples`` (B1); an algorithm whose paper and official code
    take plain means over clients (FedSpeed F4, FedAMD M1/M5, FedBuff B6) redeclares the
    field with default ``uniform`` in its config, and a scenario's ``weighting:`` overrides
    either default.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str
    lr: float = Field(0.1, gt=0)
    local_steps: PositiveInt | None = None
    local_epochs: PositiveInt | None = None
    batch_size: PositiveInt | Literal["full"] = 32
    weighting: Weighting = "samples"
    server_lr: float = Field(1.0, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    lr_decay: float = Field(1.0, gt=0, le=1, description="Per-round multiplicative decay of lr.")
    clip_norm: float | None = Field(None, gt=0)
    client_optimizer: ClientOptimizerConfig = Field(
        default_factory=SGDOptions,
        description="The local step rule (sgd, sam, adam, adamp, sgdp, muon, drop_muon) and its options.",
    )

    @model_validator(mode="after")
    def _steps_or_epochs(self) -> AlgorithmConfig:
        if self.local_steps is not None and self.local_epochs is not None:
            raise ValueError("give either local_steps or local_epochs, not both")
        if self.local_steps is None and self.local_epochs is None:
            self.local_steps = 1
        return self

    def round_lr(self, round_index: int) -> float:
        return self.lr * self.lr_decay**round_index


def local_training(start: Tensor, ctx: ClientContext, cfg: AlgorithmConfig, **oracle: Any) -> Tensor:
    """:func:`local_sgd` with the client optimizer the config sets: K (steps or epochs),
    momentum, weight decay and clipping, shared by every algorithm. ``oracle`` holds what an
    algorithm changes in the local gradient (``correction``, ``gradient``, ``after_clip``).
    Any ``client_optimizer`` but plain ``sgd`` runs :func:`optimizer_training` instead."""
    if not is_plain_sgd(cfg.client_optimizer):
        return optimizer_training(start, ctx, cfg, ctx.steps_for(cfg.local_steps, cfg.local_epochs), **oracle)
    return local_sgd(
        start,
        ctx,
        ctx.steps_for(cfg.local_steps, cfg.local_epochs),
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        clip_norm=cfg.clip_norm,
        **oracle,
    )


@dataclass
class Reply:
    """A client's answer to one round: its message and the facts the engine accounts for."""

    client: int
    message: Tensors
    num_samples: int
    grad_evals: int
    local_steps: int
    bytes_up: int
    extras: dict[str, float] = field(default_factory=dict)
    #: Virtual compute work in minibatch-gradient units (see ``ClientContext.work``);
    #: ``None`` means one unit per local step.
    work: int | None = None
    #: Aggregation weight set by the round's client selection (temperature sampling, see
    #: flsim.algorithms.selection); ``None``: the algorithm's own ``weighting``.
    weight: float | None = None

    @property
    def compute_units(self) -> int:
        return self.local_steps if self.work is None else self.work


def tensor_bytes(message: Tensors) -> int:
    """Exact payload size of an uncompressed message: the sum of its tensors' bytes."""
    return sum(t.numel() * t.element_size() for t in message.values())


class RoundAlgorithm(ABC):
    """Base class for server/client algorithms driven in rounds (sync or buffered async).

    ``streams`` (the run's seeded streams) and ``clients_per_round`` (the scenario's) serve
    algorithms whose *server* makes random or participation-dependent choices (FedAMD's
    anchor roles, docs/algorithms.md M2) or whose clients compress stochastically.
    """

    name: ClassVar[str]
    Config: ClassVar[type[AlgorithmConfig]] = AlgorithmConfig
    #: ``True`` when ``client_update`` reads or writes persistent per-client state.
    stateful_clients: ClassVar[bool] = False
    #: The ``client_optimizer`` names this algorithm's local steps accept (docs/client_optimizers.md);
    #: plain SGD only unless the algorithm says otherwise.
    client_optimizers: ClassVar[frozenset[str]] = frozenset({"sgd"})
    #: ``True`` when ``aggregate`` weighs replies only through :meth:`weights`, so a client
    #: selection may set them (``sampling: {kind: temperature}``).
    selection_weights: ClassVar[bool] = False
    #: Which driver runs it: ``"sync"`` rounds (:class:`flsim.engine.simulation.RoundSimulation`)
    #: or ``"buffered"`` asynchronous aggregation (:class:`flsim.engine.buffered.BufferedSimulation`).
    mode: ClassVar[Literal["sync", "buffered"]] = "sync"

    def __init__(
        self,
        config: AlgorithmConfig,
        num_clients: int,
        client_sizes: list[int],
        *,
        streams: Streams = SEED_0_STREAMS,
        clients_per_round: int | None = None,
    ) -> None:
        self.config = config
        self.num_clients = num_clients
        self.client_sizes = client_sizes
        self.streams = streams
        self.clients_per_round = num_clients if clients_per_round is None else clients_per_round

    @classmethod
    def validate_against(cls, config: AlgorithmConfig, scenario: Any) -> None:
        """Checks that need the whole scenario (e.g. ``buffer_size`` ≤ number of clients).

        Called by the loader after the config itself validated; raise
        :class:`flsim.config.errors.ConfigError` naming the dotted key (``algorithm.<key>``).
        """
        return None

    @classmethod
    def example_scenario(cls, base: dict[str, Any]) -> dict[str, Any]:
        """A small scenario that exercises this algorithm, derived from ``base``.

        Registry-wide tests (for example local-vs-Ray bit equality) call this, so every
        algorithm added later is covered without editing the tests.
        """
        return {**base, "algorithm": {**base.get("algorithm", {}), "name": cls.name}}

    def init_server(self, x0: Tensor) -> Tensors:
        return {"x": x0.clone()}

    def init_client(self, client: int, x0: Tensor) -> Tensors:
        """Persistent state of a client before its first round (empty for stateless ones)."""
        return {}

    def broadcast(self, server: Tensors, round_index: int) -> Tensors:
        return {"x": server["x"]}

    def bytes_down(self, message: Tensors, client: int) -> int:
        """Bytes the server really sends ``client`` for this broadcast.

        The default is the whole message. Override where the real traffic differs: a part of
        the message only some clients need (FedAMD anchors do not need v^t, M3), or traffic
        that the official code sends but this simulator keeps on the client (FedSpeed's
        h_i − x^t in code form, F4).
        """
        return tensor_bytes(message)

    def init_phase(self, server: Tensors) -> Tensors | None:
        """A message that *every* client answers once before round 0, or ``None`` (default).

        FedAMD fills its server table v_m at x^0 this way (M, "State"). The engine charges the
        phase's gradient evaluations, bytes and virtual time like a round, then passes the
        replies to :meth:`finish_init_phase`. Clients run it with ``round_index = -1``.
        """
        return None

    def finish_init_phase(self, server: Tensors, replies: list[Reply]) -> Tensors:
        """Server state after the initial phase, from every client's reply (client-id order)."""
        return server

    @abstractmethod
    def client_update(self, message: Tensors, state: Tensors, ctx: ClientContext) -> tuple[Tensors, Tensors]:
        """Local work of one client; returns (reply message, new client state).

        Must not mutate ``message`` or ``state`` in place: checkpoints and the rewind after
        a lost worker keep references to earlier states.
        """

    @abstractmethod
    def aggregate(self, server: Tensors, replies: list[Reply], round_index: int) -> Tensors:
        """Server update from the replies of one round, given in client-id order."""

    def global_model(self, server: Tensors) -> Tensor:
        return server["x"]

    def weights(self, replies: list[Reply]) -> Tensor:
        """Aggregation weights summing to one: by sample count, or uniform (B1).

        Replies weighted by the client selection keep those weights as they are: importance
        weights sum to one only in expectation, which is what keeps the step unbiased.
        """
        if replies and all(r.weight is not None for r in replies):
            return torch.tensor([r.weight for r in replies], dtype=torch.float64)
        if self.config.weighting == "uniform":
            raw = torch.ones(len(replies), dtype=torch.float64)
        else:
            raw = torch.tensor([r.num_samples for r in replies], dtype=torch.float64)
        return raw / raw.sum()

    def weighted_mean(
        self,
        replies: list[Reply],
        key: str,
        like: Tensor | None = None,
        factor: Callable[[Reply], float] | None = None,
    ) -> Tensor:
        """Σ_i w_i m_i summed in client-id order, so every backend gets the same bits.

        ``factor`` scales each reply's weight (FedBuff's staleness). A message shorter than
        ``like`` is the tail of the vector from some layer on (a Drop-Muon upload): each
        stretch of coordinates is then averaged over the replies that sent it, with the
        weights renormalised over those senders; what nobody sent stays 0.
        """
        size = replies[0].message[key].numel() if like is None else like.numel()
        if any(reply.message[key].numel() != size for reply in replies):
            assert like is not None
            return self._tail_mean(replies, key, like, factor)
        weights = self.weights(replies)
        out = torch.zeros_like(replies[0].message[key])
        for w, reply in zip(weights.tolist(), replies, strict=True):
            out.add_(reply.message[key], alpha=w if factor is None else w * factor(reply))
        return out

    def _tail_mean(
        self, replies: list[Reply], key: str, like: Tensor, factor: Callable[[Reply], float] | None
    ) -> Tensor:
        """The per-layer mean of tail uploads: coordinates [o, end) over the senders with offset ≤ o.

        Each stretch rescales its senders' weights to the round's total weight (1 for the
        ``samples``/``uniform`` weightings, so the weights are renormalised over the senders;
        importance weights of a client selection keep their unbiased total).
        """
        size = like.numel()
        offsets = [size - reply.message[key].numel() for reply in replies]
        weights = self.weights(replies).tolist()
        total = sum(weights)
        starts = sorted(set(offsets))
        out = torch.zeros_like(like)
        for start, end in zip(starts, [*starts[1:], size], strict=True):
            senders = [i for i, offset in enumerate(offsets) if offset <= start]
            rescale = total / sum(weights[i] for i in senders)
            for i in senders:
                reply, offset = replies[i], offsets[i]
                scale = weights[i] * rescale * (1.0 if factor is None else factor(reply))
                out[start:end].add_(reply.message[key][start - offset : end - offset], alpha=scale)
        return out


class RegisteredAlgorithm(Protocol):
    """What the registry needs of an algorithm class, whatever its mode.

    ``mode`` picks the driver (:mod:`flsim.engine.modes`): ``sync`` and ``buffered`` are
    :class:`RoundAlgorithm` subclasses, ``gossip`` are
    :class:`~flsim.algorithms.gossip.GossipAlgorithm` and ``events`` are
    :class:`~flsim.algorithms.events.EventAlgorithm`.
    """

    name: ClassVar[str]
    mode: ClassVar[str]
    Config: ClassVar[type[AlgorithmConfig]]


#: Every algorithm by name: the one registry, filled by :func:`register`.
REGISTRY: dict[str, type[RegisteredAlgorithm]] = {}

AlgorithmClass = TypeVar("AlgorithmClass", bound=type)


def register(cls: AlgorithmClass) -> AlgorithmClass:
    """Class decorator: make an algorithm of any mode available by its ``name`` in scenarios."""
    if cls.name in REGISTRY:
        raise ValueError(f"algorithm {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


def parse_algorithm_config(raw: dict[str, Any]) -> AlgorithmConfig:
    """Validate the ``algorithm`` mapping against the named algorithm's config model."""
    name = raw.get("name")
    if name not in REGISTRY:
        from flsim.config.errors import ConfigError

        raise ConfigError("algorithm.name", name, f"unknown algorithm; choose from {sorted(REGISTRY)}")
    try:
        config = REGISTRY[name].Config.model_validate(raw)
    except ValidationError as exc:
        raise without_union_tags(exc) from None
    check_client_optimizer(REGISTRY[name], config)
    return config


def check_client_optimizer(algorithm: type, config: AlgorithmConfig) -> None:
    """The algorithm accepts this client optimizer, and its momentum keys do not clash."""
    from flsim.config.errors import ConfigError

    chosen = config.client_optimizer.name
    accepted = getattr(algorithm, "client_optimizers", frozenset({"sgd"}))
    if chosen not in accepted:
        raise ConfigError(
            "algorithm.client_optimizer.name",
            chosen,
            f"{config.name!r} takes {sorted(accepted)} (docs/client_optimizers.md says why)",
        )
    if chosen in ("adam", "adamp", "muon", "drop_muon") and config.momentum:
        raise ConfigError(
            "algorithm.momentum",
            config.momentum,
            f"client_optimizer {chosen!r} keeps its own momentum; leave algorithm.momentum at 0",
        )
