"""FedAMD (docs/algorithms.md M1–M5), Wu et al., ICML 2023 (anchor sampling); code: HarliWu/FedAMD."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field, PositiveInt, field_validator, model_validator
from torch import Tensor

from flsim.algorithms.base import (
    AlgorithmConfig,
    Reply,
    RoundAlgorithm,
    Tensors,
    Weighting,
    local_training,
    register,
    tensor_bytes,
)
from flsim.algorithms.client import Batch, ClientContext


class FedAMDConfig(AlgorithmConfig):
    """Defaults from M: η = 0.01, η_g = 1, K = 10 steps, b = 64, B′ = full local data, p = 0.2.

    * ``anchor_prob``: p ∈ [0, 1], or ``closed_form`` for the heuristic
      p = √(4r² + 2r) − 2r with r = N/A (M2).
    * ``period``: the periodic variant instead of coin flips: every ``period``-th round
      (rounds period−1, 2·period−1, ...) all sampled clients are anchors, otherwise all are
      miners. Mutually exclusive with an explicit ``anchor_prob``.
    * ``anchor_batch``: B′, ``full`` (default) or a sample count drawn without replacement.
    * ``init_table``: every client fills v_m at x^0 before round 0 (M, "State"; default).
      ``false`` starts from v_m = 0 and skips that phase's cost.
    * ``weighting``: ``uniform`` (default), the plain means (1/N) Σ_m of M1 and mean_miners of
      M5 in the paper and the official code; ``samples`` weights both by sample count (B1).
    """

    lr: float = Field(0.01, gt=0)
    batch_size: PositiveInt | Literal["full"] = 64
    anchor_prob: float | Literal["closed_form"] = 0.2
    period: PositiveInt | None = None
    anchor_batch: PositiveInt | Literal["full"] = "full"
    init_table: bool = True
    weighting: Weighting = "uniform"

    @model_validator(mode="before")
    @classmethod
    def _default_steps(cls, data: Any) -> Any:
        """K = 10 local steps unless the user counts K otherwise."""
        if isinstance(data, dict) and data.get("local_steps") is None and data.get("local_epochs") is None:
            data = {**data, "local_steps": 10}
        return data

    @field_validator("anchor_prob")
    @classmethod
    def _probability(cls, value: float | str) -> float | str:
        if isinstance(value, float) and not 0.0 <= value <= 1.0:
            raise ValueError("must be a probability in [0, 1]")
        return value

    @model_validator(mode="after")
    def _check_roles(self) -> FedAMDConfig:
        if self.period is not None and "anchor_prob" in self.model_fields_set:
            raise ValueError("give either anchor_prob or period, not both")
        return self


def closed_form_anchor_prob(num_clients: int, clients_per_round: int) -> float:
    """(M2) p = √(4r² + 2r) − 2r with r = N/A."""
    r = num_clients / clients_per_round
    return math.sqrt(4 * r * r + 2 * r) - 2 * r


@register
class FedAMD(RoundAlgorithm):
    """FedAMD with anchor sampling, following M1–M5.

    * State: the server keeps x^t and the table v_m of every client's latest large-batch
      gradient (server-side N × d by the paper's design); clients are stateless. The
      table is filled at x^0 by the engine's initial phase, charged like a round.
    * (M1) v^t = Σ_m w_m v_m over *all* N clients. Default ``weighting: uniform``: the plain
      mean (1/N) Σ_m v_m of the paper and the official code, whose fixed point minimises
      (1/N) Σ_m f_m. ``samples`` gives Σ (n_m/n) v_m, whose fixed point minimises the
      sample-weighted objective that ``optimality_gap`` measures; the two coincide on equal
      shards. It is computed once, in the broadcast, so anchor refreshes of round t reach
      v^{t+1} only (property (c); a test checks it).
    * (M2) Roles are drawn by the server, per client and round, from the stream
      ``("fedamd.roles", round)``: a client is an anchor with probability p, independently
      of being sampled, so a sampled client is an anchor with probability p.
    * (M3) Anchor: g = ∇f_m(x^t; B′), uploaded (d up, d down: it needs x^t only).
    * (M4) Miner: y_0 = y_{−1} = x^t, u_{−1} = v^t; u_k = u_{k−1} + g_m(y_k; ξ_k) − g_m(y_{k−1}; ξ_k)
      on the same ξ_k; y_{k+1} = y_k − η u_k (plus the shared optimizer options: clipping,
      weight decay and momentum act on u_k). Uploads Δ_m = x^t − y_K (d up; 2d down).
    * (M5) x^{t+1} = x^t − η_g Σ_{miners} w_m Δ_m, w_m = 1/#miners by default (the paper's
      mean), ∝ n_m under ``weighting: samples``; unchanged if there are none.

    Cost accounting: a miner step is 2 oracle calls (both terms of M4, even at k = 0 where
    they coincide, as written). An anchor's large-batch gradient is 1 oracle call, like any
    full-batch gradient in this simulator; its virtual compute time is ⌈|B′|/b⌉ minibatch
    steps (``ClientContext.work``). Each reply's ``extras["anchor_fraction"]`` is 1 for an
    anchor and 0 for a miner, so metrics rows show the share of anchors among the round's
    participants.
    """

    name = "fedamd"
    Config = FedAMDConfig

    @classmethod
    def example_scenario(cls, base: dict[str, Any]) -> dict[str, Any]:
        algorithm = {"name": cls.name, "lr": 0.05, "local_steps": 3, "batch_size": 8, "anchor_prob": 0.5}
        return {**base, "algorithm": algorithm}

    @property
    def cfg(self) -> FedAMDConfig:
        assert isinstance(self.config, FedAMDConfig)
        return self.config

    def anchor_probability(self) -> float:
        p = self.cfg.anchor_prob
        return closed_form_anchor_prob(self.num_clients, self.clients_per_round) if p == "closed_form" else p

    def roles(self, round_index: int) -> Tensor:
        """(M2) A boolean mask over all clients: True = anchor in this round."""
        if self.cfg.period is not None:
            every = (round_index + 1) % self.cfg.period == 0
            return torch.full((self.num_clients,), every, dtype=torch.bool)
        draws = self.streams.numpy("fedamd.roles", 0, round_index).random(self.num_clients)
        return torch.from_numpy(draws < self.anchor_probability())

    def table_weights(self) -> Tensor:
        if self.config.weighting == "uniform":
            return torch.full((self.num_clients,), 1.0 / self.num_clients, dtype=torch.float64)
        sizes = torch.tensor(self.client_sizes, dtype=torch.float64)
        return sizes / sizes.sum()

    # -- server ---------------------------------------------------------------------------
    def init_server(self, x0: Tensor) -> Tensors:
        return {"x": x0.clone(), "table": x0.new_zeros((self.num_clients, x0.numel()))}

    def init_phase(self, server: Tensors) -> Tensors | None:
        if not self.cfg.init_table:
            return None
        return {"x": server["x"], "anchor": torch.ones(self.num_clients, dtype=torch.bool)}

    def finish_init_phase(self, server: Tensors, replies: list[Reply]) -> Tensors:
        return self._refresh(server, replies)

    def broadcast(self, server: Tensors, round_index: int) -> Tensors:
        table = server["table"]
        v = torch.zeros_like(server["x"])
        for w, row in zip(self.table_weights().tolist(), table, strict=True):
            v.add_(row, alpha=w)  # (M1), summed in client-id order
        return {"x": server["x"], "v": v, "anchor": self.roles(round_index)}

    def bytes_down(self, message: Tensors, client: int) -> int:
        """Anchors receive x^t only; miners x^t and v^t. The role itself is a header flag."""
        if bool(message["anchor"][client]):
            return tensor_bytes({"x": message["x"]})
        return tensor_bytes({"x": message["x"], "v": message["v"]})

    def _refresh(self, server: Tensors, anchors: list[Reply]) -> Tensors:
        """(M3) v_m ← g for every anchor m; a new table, the old one stays untouched."""
        if not anchors:
            return server
        table = server["table"].clone()
        for reply in anchors:
            table[reply.client] = reply.message["anchor_grad"]
        return {**server, "table": table}

    def aggregate(self, server: Tensors, replies: list[Reply], round_index: int) -> Tensors:
        anchors = [r for r in replies if "anchor_grad" in r.message]
        miners = [r for r in replies if "delta" in r.message]
        x = server["x"]
        if miners:
            x = x - self.config.server_lr * self.weighted_mean(miners, "delta")  # (M5)
        return {**self._refresh(server, anchors), "x": x}

    # -- client ---------------------------------------------------------------------------
    def client_update(self, message: Tensors, state: Tensors, ctx: ClientContext) -> tuple[Tensors, Tensors]:
        anchor = bool(message["anchor"][ctx.client])
        ctx.extras["anchor_fraction"] = float(anchor)  # averaged over a round's replies
        if anchor:
            return {"anchor_grad": self._anchor_gradient(message["x"], ctx)}, state
        return {"delta": message["x"] - self._mine(message, ctx)}, state

    def _anchor_gradient(self, x: Tensor, ctx: ClientContext) -> Tensor:
        """(M3) g = ∇f_m(x^t; B′), B′ the full local set or a sample without replacement."""
        shard = ctx.shard
        size = self.cfg.anchor_batch
        if size == "full" or size >= len(shard):
            batch = Batch(shard.x, shard.y)
        else:
            index = torch.randperm(len(shard), generator=ctx.generator)[:size]
            batch = Batch(shard.x[index], shard.y[index])
        return ctx.grad(x, batch)  # its virtual compute time is ⌈|B′|/b⌉ steps (ctx.work)

    def _mine(self, message: Tensors, ctx: ClientContext) -> Tensor:
        """(M4) K variance-reduced steps from y_0 = y_{−1} = x^t, u_{−1} = v^t."""
        cfg = self.cfg
        x = message["x"]
        u = message["v"]
        previous = x

        def recursive_gradient(y: Tensor, batch: Batch) -> Tensor:
            nonlocal u, previous
            u = u + ctx.grad(y, batch) - ctx.grad(previous, batch)
            previous = y.clone()  # local_sgd updates y in place after this returns
            return u

        return local_training(x, ctx, cfg, gradient=recursive_gradient)
