"""Decentralized algorithms in synchronous rounds: local work, then gossip (docs/algorithms.md B7, B8, D).

There is no server. Node i keeps its own model x_i. One round is

* ``train_first`` (default): z_i = Local(x_i); Q gossip steps z ← W z; x_i = Finish(z_i);
* ``gossip_first`` (DisPFL-code order): z ← W^Q x; x_i = Local(z_i).

``local_phase`` and ``after_mix`` are pure functions of one node's tensors, exactly like a
round-based client update, so the same code runs in process or on a Ray actor. Mixing is
done by the engine (:mod:`flsim.engine.gossip`), summing neighbours in node-id order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

from pydantic import Field, PositiveInt, model_validator
from torch import Tensor

from flsim.algorithms.base import AlgorithmConfig, Tensors, local_training, register
from flsim.algorithms.batched import (
    BatchedContext,
    batched_sam_oracle,
    batched_training,
    unstack,
    vectorizable,
)
from flsim.algorithms.client import ClientContext
from flsim.algorithms.client_optimizers import ALL_OPTIMIZERS
from flsim.algorithms.sam import sam_oracle
from flsim.rng import SEED_0_STREAMS, Streams


class GossipConfig(AlgorithmConfig):
    """Shared by every gossip algorithm: Q gossip steps per round and the order of the phases."""

    gossip_steps: PositiveInt = 1
    order: Literal["train_first", "gossip_first"] = "train_first"


class GossipAlgorithm(ABC):
    """Base class for synchronous decentralized algorithms (driver: ``gossip``)."""

    name: ClassVar[str]
    Config: ClassVar[type[GossipConfig]] = GossipConfig
    mode: ClassVar[str] = "gossip"
    #: The ``client_optimizer`` names the local steps accept (docs/client_optimizers.md).
    client_optimizers: ClassVar[frozenset[str]] = frozenset({"sgd"})

    def __init__(
        self,
        config: GossipConfig,
        num_nodes: int,
        node_sizes: list[int],
        *,
        streams: Streams = SEED_0_STREAMS,
        **_: Any,
    ) -> None:
        self.streams = streams
        self.config = config
        self.num_nodes = num_nodes
        self.node_sizes = node_sizes

    @classmethod
    def validate_against(cls, config: AlgorithmConfig, scenario: Any) -> None:
        from flsim.config.errors import ConfigError

        if getattr(scenario, "topology", None) is None:
            raise ConfigError(
                "topology", None, f"algorithm {cls.name!r} is decentralized and needs a topology"
            )
        compression = scenario.compression
        if compression.error_feedback != "none" or compression.downlink is not None:
            reason = (
                "gossip compresses each sent vector (compression.uplink); its error correction is "
                "compression.choco, not error_feedback"
            )
            raise ConfigError("compression", compression.model_dump(), reason)

    @classmethod
    def example_scenario(cls, base: dict[str, Any]) -> dict[str, Any]:
        """A small ring scenario for registry-wide tests."""
        return {
            **base,
            "algorithm": {**base.get("algorithm", {}), "name": cls.name},
            "topology": {"kind": "ring"},
            "clients_per_round": None,
        }

    def init_node(self, node: int, x0: Tensor) -> Tensors:
        return {"x": x0.clone()}

    @abstractmethod
    def local_phase(self, x: Tensor, state: Tensors, ctx: ClientContext) -> tuple[Tensor, Tensors]:
        """Local work from ``x``; returns (the vector to gossip, the node's new state)."""

    def after_mix(self, mixed: Tensor, state: Tensors, ctx: ClientContext) -> tuple[Tensor, Tensors]:
        """The new x_i from the gossiped vector (identity for DFedAvg/DFedSAM)."""
        return mixed, state

    def local_sgd_from(self, x: Tensor, ctx: ClientContext, **kwargs: Any) -> Tensor:
        cfg = self.config
        return local_training(x, ctx, cfg, **kwargs)


@vectorizable
@register
class DPSGD(GossipAlgorithm):
    """(B7) x_i^{t+1} = Σ_j W_ij x_j^t − η g_i(x_i^t): the gradient is taken before mixing
    and applied after it. One gradient per round; ``order`` does not apply."""

    name = "dpsgd"
    #: One plain gradient per round: nothing for ``client_optimizer.state: persist`` to keep.
    has_local_steps: ClassVar[bool] = False

    def local_phase(self, x: Tensor, state: Tensors, ctx: ClientContext) -> tuple[Tensor, Tensors]:
        gradient = ctx.grad(x, next(ctx.batches()))
        ctx.steps += 1
        return x, {**state, "pending_step": ctx.lr * gradient}

    def local_phase_batched(
        self, x: Tensor, states: list[Tensors], bctx: BatchedContext
    ) -> tuple[Tensors, list[Tensors]]:
        """:meth:`local_phase` for a stack of nodes: one stacked gradient, kept as each row's step."""
        pending = {"pending_step": bctx.lr * bctx.grad(x, bctx.batch(0))}
        bctx.steps += 1
        return {"sent": x}, [{**state, **unstack(pending, row)} for row, state in enumerate(states)]

    def after_mix(self, mixed: Tensor, state: Tensors, ctx: ClientContext) -> tuple[Tensor, Tensors]:
        rest = {k: v for k, v in state.items() if k != "pending_step"}
        return mixed - state["pending_step"], rest


@vectorizable
@register
class DFedAvg(GossipAlgorithm):
    """(B8) K local SGD steps, then one gossip step (Q = ``gossip_steps``)."""

    name = "dfedavg"
    #: Plain local steps; Drop-Muon's saving is a partial upload, and gossip mixes whole models.
    client_optimizers = ALL_OPTIMIZERS - {"drop_muon"}

    def local_phase(self, x: Tensor, state: Tensors, ctx: ClientContext) -> tuple[Tensor, Tensors]:
        return self.local_sgd_from(x, ctx), state

    def local_phase_batched(
        self, x: Tensor, states: list[Tensors], bctx: BatchedContext
    ) -> tuple[Tensors, list[Tensors]]:
        """:meth:`local_phase` for a stack of nodes [K, D]: K local SGD steps a row."""
        return {"sent": batched_training(x, bctx, self.config)}, states


class DFedAvgMConfig(GossipConfig):
    momentum: float = Field(0.9, ge=0, lt=1)


@vectorizable
@register
class DFedAvgM(DFedAvg):
    """(B8) DFedAvg with heavy-ball momentum in the local steps (default 0.9)."""

    name = "dfedavgm"
    Config = DFedAvgMConfig
    #: Its momentum (0.9) is the SGD-family momentum: optimizers with their own moments clash.
    client_optimizers = frozenset({"sgd", "sam", "sgdp"})


class DFedSAMConfig(GossipConfig):
    rho: float = Field(0.05, ge=0)
    perturb_eps: float = Field(1e-12, ge=0)


@vectorizable
@register
class DFedSAM(GossipAlgorithm):
    """(D1–D2) K local SAM steps (the B4 rule) from x_i, then Q = 1 gossip step.

    With W = J (complete graph, uniform weights) and Q = 1 this is FedSAM with full
    participation and uniform weighting (D property (a); a test checks it).
    """

    name = "dfedsam"
    Config = DFedSAMConfig

    def local_phase(self, x: Tensor, state: Tensors, ctx: ClientContext) -> tuple[Tensor, Tensors]:
        cfg = self.config
        assert isinstance(cfg, DFedSAMConfig)
        return self.local_sgd_from(x, ctx, gradient=sam_oracle(ctx, cfg.rho, eps=cfg.perturb_eps)), state

    def local_phase_batched(
        self, x: Tensor, states: list[Tensors], bctx: BatchedContext
    ) -> tuple[Tensors, list[Tensors]]:
        """:meth:`local_phase` for a stack of nodes: the B4 SAM step on every row."""
        cfg = self.config
        assert isinstance(cfg, DFedSAMConfig)
        oracle = batched_sam_oracle(bctx, cfg.rho, eps=cfg.perturb_eps)
        return {"sent": batched_training(x, bctx, cfg, gradient=oracle)}, states


class DFedSAMMGSConfig(DFedSAMConfig):
    gossip_steps: PositiveInt = 4

    @model_validator(mode="after")
    def _multiple_gossip_steps(self) -> DFedSAMMGSConfig:
        if self.gossip_steps < 2:
            raise ValueError("dfedsam_mgs needs gossip_steps > 1 (use dfedsam for Q = 1)")
        return self


@vectorizable
@register
class DFedSAMMGS(DFedSAM):
    """(D2) DFedSAM with multiple gossip steps, Q = 4 by default (the paper's main setting)."""

    name = "dfedsam_mgs"
    Config = DFedSAMMGSConfig
