"""Shared parts of the compressed one-step methods of docs/algorithms.md E (EControl, EF14, EF21, ...).

Each of ``econtrol`` (E1–E2), ``ef14`` (E3), ``ef21`` (E4), ``compressed_sgd`` (E5) and
``ef21_sgdm`` is a round-based algorithm in which a round is *one* step of its recursion:

* the server broadcasts x (EF21: the stepped iterate x − γg, see :mod:`~flsim.algorithms.ef21`);
* each participating client draws one gradient g_i — full-batch with ``batch_size: full``,
  one minibatch otherwise, always through ``ctx.grad`` so that gradient evaluations are
  counted — runs its part of the recursion on its own persistent state (e_i, h_i, g_i, kept
  in the client-state dict, never modified in place) and replies with the compressed message;
* the server keeps x and, for EControl / EF21, the O(d) aggregate h = Σ_i w_i h_i over *all*
  N clients (not a table of the h_i), updated by the participants' increments, which is the
  partial-participation form of E2 / E4.

Byte accounting: the reply is the *encoded* message of :mod:`flsim.compression.wire` (e.g.
top-k values plus minimal-width indices), so the engine's ``bytes_up`` — the reply tensors'
bytes — is the compressed size, and the server decodes what was really sent. The client uses
the same decoded value in its own recursion, so its h_i and the server's view agree bit for bit.

Weights: w_i = n_i/n (``weighting: samples``, the default) or 1/N (``uniform``); the two
coincide on equal shards, where Σ_i w_i h_i is the spec's mean h_i. Where a method averages
only this round's messages (EF14, E5), the participants' weights are renormalised.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import ValidationInfo, field_validator
from torch import Tensor

from flsim.algorithms.base import AlgorithmConfig, Reply, RoundAlgorithm, Tensors
from flsim.algorithms.batched import BatchedContext, one_gradient_each
from flsim.algorithms.client import ClientContext
from flsim.compression.compressors import Compressor
from flsim.compression.config import CompressorConfig, build_compressor
from flsim.compression.wire import decode, transmit
from flsim.config.errors import ConfigError

__all__ = ["CompressedConfig", "CompressedRoundAlgorithm", "ContractiveConfig"]


class CompressedConfig(AlgorithmConfig):
    """``lr`` is the step size γ; ``compressor`` the operator C (e.g. ``{kind: topk, k: 1}``).

    A round is one gradient step, so the local-training options of the shared config
    (several local steps or epochs, momentum, clipping, weight decay, a server rate) have no
    place in these recursions and are rejected rather than silently ignored.
    """

    compressor: CompressorConfig

    @field_validator("local_steps")
    @classmethod
    def _one_step(cls, value: int | None) -> int | None:
        if value is not None and value != 1:
            raise ValueError("a round is one gradient step here; leave local_steps at 1")
        return value

    @field_validator("local_epochs", "clip_norm")
    @classmethod
    def _unset(cls, value: object, info: ValidationInfo) -> object:
        if value is not None:
            raise ValueError(f"{info.field_name} is not used by this one-step recursion; remove it")
        return value

    @field_validator("momentum", "weight_decay")
    @classmethod
    def _zero(cls, value: float, info: ValidationInfo) -> float:
        if value != 0.0:
            raise ValueError(f"{info.field_name} is not used by this one-step recursion; remove it")
        return value

    @field_validator("server_lr")
    @classmethod
    def _no_server_lr(cls, value: float) -> float:
        if value != 1.0:
            raise ValueError("not used: lr is the step size γ; remove server_lr")
        return value


class ContractiveConfig(CompressedConfig):
    """Error feedback assumes a contractive C (E, first line): top-k, sign, identity, or a
    rand-k / QSGD / natural compressor with ``scale_to_contractive: true``."""

    @field_validator("compressor")
    @classmethod
    def _contractive(cls, value: CompressorConfig) -> CompressorConfig:
        if not value.contractive:
            raise ValueError(
                f"error feedback needs a contractive compressor; {value.kind} is unbiased: "
                "set scale_to_contractive: true or use topk / sign"
            )
        return value


class CompressedRoundAlgorithm(RoundAlgorithm):
    """Base class: the compressor, one gradient per round, the wire format and the weights."""

    Config: ClassVar[type[AlgorithmConfig]] = CompressedConfig
    #: One gradient at x per round, no client optimizer: nothing for ``state: persist`` to keep.
    has_local_steps: ClassVar[bool] = False
    #: A compressor for :meth:`example_scenario` (registry-wide tests).
    example_compressor: ClassVar[dict[str, Any]] = {"kind": "topk", "k": 2}

    def __init__(
        self, config: AlgorithmConfig, num_clients: int, client_sizes: list[int], **kwargs: Any
    ) -> None:
        super().__init__(config, num_clients, client_sizes, **kwargs)
        assert isinstance(config, CompressedConfig)
        self.compressor: Compressor = build_compressor(config.compressor)
        if config.weighting == "uniform":
            raw = torch.ones(num_clients, dtype=torch.float64)
        else:
            raw = torch.tensor(client_sizes, dtype=torch.float64)
        #: w_i over all N clients, summing to one.
        self.client_weights: list[float] = (raw / raw.sum()).tolist()

    @classmethod
    def validate_against(cls, config: AlgorithmConfig, scenario: Any) -> None:
        """The method compresses its own uplink, so a channel on top would compress twice."""
        compression = scenario.compression
        if compression.uplink is not None:
            raise ConfigError(
                "compression.uplink",
                compression.uplink.kind,
                f"{cls.name} compresses its own uplink with algorithm.compressor; remove compression.uplink",
            )
        if compression.error_feedback != "none":
            raise ConfigError(
                "compression.error_feedback",
                compression.error_feedback,
                f"{cls.name} is itself an error-feedback method; remove compression.error_feedback",
            )

    @classmethod
    def example_scenario(cls, base: dict[str, Any]) -> dict[str, Any]:
        scenario = {key: value for key, value in base.items() if key != "compression"}
        algorithm = {
            "name": cls.name,
            "lr": 0.05,
            "batch_size": 8,
            "compressor": dict(cls.example_compressor),
        }
        return {**scenario, "algorithm": algorithm}

    # -- client side ------------------------------------------------------------------------
    def gradient(self, x: Tensor, ctx: ClientContext) -> Tensor:
        """g_i(x): one oracle call on the full shard or on one seeded minibatch (one step)."""
        g = ctx.grad(x, next(ctx.batches()))
        ctx.steps += 1
        return g

    def client_update_batched(
        self, message: Tensors, states: list[Tensors], bctx: BatchedContext
    ) -> tuple[list[Tensors], list[Tensors]]:
        """The round's one gradient for a stack of clients, then each client's own recursion
        and compressed message (docs/vectorized.md); registered per method with ``vectorizable``."""
        return one_gradient_each(message, states, bctx, self.client_update)

    def send(self, v: Tensor, ctx: ClientContext) -> tuple[Tensors, Tensor]:
        """(the encoded message C(v), its decoded value), randomness from this client and round."""
        generator = None
        if self.compressor.stochastic:
            generator = self.streams.torch(f"{self.name}.compressor", ctx.client, ctx.round_index)
        return transmit(self.compressor, v, generator)

    # -- server side ------------------------------------------------------------------------
    def received(self, replies: list[Reply], like: Tensor) -> list[Tensor]:
        """Every reply decoded, in client-id order."""
        return [decode(self.compressor, reply.message, like) for reply in replies]

    def weighted_sum(self, replies: list[Reply], like: Tensor) -> Tensor:
        """Σ_{i∈S} w_i m_i with the fixed weights over all N clients, summed in client-id order."""
        out = torch.zeros_like(like)
        for reply, value in zip(replies, self.received(replies, like), strict=True):
            out.add_(value, alpha=self.client_weights[reply.client])
        return out

    def participant_mean(self, replies: list[Reply], like: Tensor) -> Tensor:
        """Σ_{i∈S} w_i m_i / Σ_{i∈S} w_i: the mean of this round's messages (E3, E5)."""
        total = sum(self.client_weights[reply.client] for reply in replies)
        return self.weighted_sum(replies, like) / total
