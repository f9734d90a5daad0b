"""The client optimizer: which rule a client's local steps follow (``algorithm.client_optimizer``).

Every algorithm computes its local gradient its own way (FedProx adds μ(y − x), SCAFFOLD
c − c_i, FedDyn −∇L_i + α(y − x)); the client optimizer decides what a step does with that
gradient. ``sgd`` (the default) is the shared heavy-ball SGD of :func:`local_sgd`, bit for bit;
``sam`` replaces the gradient by SAM's (the B4 rule, two gradients a step) and then steps like
``sgd``; ``adam``, ``adamp``, ``sgdp``, ``muon`` and ``drop_muon`` run :mod:`flsim.optim` on the
flat iterate (:class:`flsim.optim.flat.FlatOptimizer`). Which algorithm accepts which is its
``client_optimizers`` class attribute, checked when the scenario loads (docs/client_optimizers.md).

Shared keys keep their meaning: ``algorithm.lr`` (with ``lr_decay``) is every optimizer's step
size, ``clip_norm`` clips the corrected gradient before the optimizer sees it, and
``weight_decay`` is each optimizer's own: coupled (added to the gradient) for ``sgd``/``sam``,
decoupled for the others, as their papers define it. ``algorithm.momentum`` is the momentum of
``sgd``, ``sam`` and ``sgdp``; Adam and Muon keep their own (``betas``, ``momentum`` here).

``state: persist`` keeps the optimizer's state per client across rounds in the client-state
store (keys ``client_optimizer.*``); ``reset`` (the default, as before) starts each round fresh.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError
from torch import Tensor

from flsim.algorithms.client import Batch, ClientContext, clip_by_norm, local_sgd
from flsim.algorithms.sam import sam_oracle
from flsim.config.sections import register_check
from flsim.optim import SGDP, AdamP, Muon
from flsim.optim.flat import FlatOptimizer, Layout, layout_of
from flsim.rng import torch_rng

#: Key prefix of the optimizer's persistent state inside a client's state dict.
STATE_PREFIX = "client_optimizer."
ALL_OPTIMIZERS = frozenset({"sgd", "sam", "adam", "adamp", "sgdp", "muon", "drop_muon"})
StateMode = Literal["persist", "reset"]
Tensors = dict[str, Tensor]
Unit = Annotated[float, Field(ge=0, lt=1)]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    state: StateMode = Field("reset", description="persist: keep the optimizer state per client over rounds.")


class SGDOptions(_Options):
    """Heavy-ball SGD with ``algorithm.momentum`` and coupled ``weight_decay`` (the default)."""

    name: Literal["sgd"] = "sgd"


class SAMOptions(_Options):
    """SAM's gradient (radius ``rho``, normalised perturbation, same minibatch), then an SGD step."""

    name: Literal["sam"] = "sam"
    rho: float = Field(0.05, ge=0)
    perturb_eps: float = Field(1e-12, ge=0)


class AdamOptions(_Options):
    """Adam with decoupled weight decay (AdamW); defaults are Kingma & Ba's."""

    name: Literal["adam"] = "adam"
    betas: tuple[Unit, Unit] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)


class AdamPOptions(_Options):
    """AdamP: Adam whose update loses its radial part on weights detected as scale-invariant."""

    name: Literal["adamp"] = "adamp"
    betas: tuple[Unit, Unit] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    delta: float = Field(0.1, ge=0, description="Projection threshold δ/√dim on |cos(w, ∇w)|.")
    wd_ratio: float = Field(0.1, ge=0, description="Weight-decay factor on projected weights.")
    nesterov: bool = False


class SGDPOptions(_Options):
    """SGDP: SGD with ``algorithm.momentum`` whose update is projected like AdamP's."""

    name: Literal["sgdp"] = "sgdp"
    dampening: float = Field(0.0, ge=0, le=1)
    nesterov: bool = False
    eps: float = Field(1e-8, gt=0)
    delta: float = Field(0.1, ge=0)
    wd_ratio: float = Field(0.1, ge=0)


class MuonOptions(_Options):
    """Muon on every matrix (official defaults); vectors take the same momentum, unorthogonalised."""

    name: Literal["muon"] = "muon"
    momentum: Unit = 0.95
    nesterov: bool = True
    ns_steps: PositiveInt = 5


class DropMuonOptions(_Options):
    """Muon on layers s..b−1 only, s uniform on 0..``max_start_layer``; uploads only those layers."""

    name: Literal["drop_muon"] = "drop_muon"
    momentum: Unit = 0.95
    nesterov: bool = True
    ns_steps: PositiveInt = 5
    resample: Literal["round", "step"] = Field(
        "round", description="Draw s once per client-round (default) or every local step."
    )
    max_start_layer: Annotated[int, Field(ge=0)] | None = Field(
        None, description="Largest s drawn (None: the last layer); 0 trains and uploads every layer."
    )


ClientOptimizerConfig = Annotated[
    SGDOptions | SAMOptions | AdamOptions | AdamPOptions | SGDPOptions | MuonOptions | DropMuonOptions,
    Field(discriminator="name"),
]


def without_union_tags(exc: ValidationError) -> ValidationError:
    """The same errors with the keys a scenario writes: ``client_optimizer.betas.1``, not
    pydantic's ``client_optimizer.adamp.betas.1``; an unknown name is ``client_optimizer.name``."""
    details: list[Any] = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        if loc[:1] == ("client_optimizer",):
            if len(loc) > 1 and loc[1] in ALL_OPTIMIZERS:
                loc = loc[:1] + loc[2:]
            elif error["type"] in ("union_tag_invalid", "union_tag_not_found"):
                loc = (*loc, "name")
        details.append(
            {"type": error["type"], "loc": loc, "input": error["input"], "ctx": error.get("ctx", {})}
        )
    return ValidationError.from_exception_data(exc.title, details)


def is_plain_sgd(options: Any) -> bool:
    """The default rule, which every algorithm's own local step already is."""
    return options.name == "sgd" and options.state == "reset"


def check_against_scenario(options: Any, scenario: Any) -> None:
    """Load-time checks that need the scenario: Drop-Muon's tail uploads bypass compression.

    A compressed uplink (and its error feedback) keeps per-key state of a fixed length, which a
    tail whose length changes every round would break; the two are not combined.
    """
    compression = scenario.compression
    compressed = compression.uplink is not None or compression.error_feedback != "none"
    if options.name == "drop_muon" and compressed:
        from flsim.config.errors import ConfigError

        reason = "drop_muon uploads a tail of the model whose length varies, which compression cannot take"
        raise ConfigError("algorithm.client_optimizer.name", options.name, reason)


def stored_state(state: Tensors) -> Tensors:
    """The optimizer's part of a client's state dict, prefix removed."""
    return {k.removeprefix(STATE_PREFIX): v for k, v in state.items() if k.startswith(STATE_PREFIX)}


def with_stored_state(state: Tensors, optimizer_state: Tensors | None) -> Tensors:
    """A client's new state dict with the optimizer's new state (if it persists) put back."""
    if optimizer_state is None:
        return state
    return {**state, **{STATE_PREFIX + k: v for k, v in optimizer_state.items()}}


def run_with_optimizer_state(
    update: Callable[[Any, Tensors, ClientContext], tuple[Any, Tensors]],
    first: Any,
    state: Tensors,
    ctx: ClientContext,
) -> tuple[Any, Tensors]:
    """Run a client update (or a gossip node's local phase) with its persisted optimizer state.

    The host calls this instead of the update itself: the optimizer state travels in the
    client's state dict, so the store keeps it, spills it and checkpoints it like SCAFFOLD's
    c_i, and algorithms that return a fresh state dict do not lose it.
    """
    ctx.optimizer_state = stored_state(state)
    out, new_state = update(first, state, ctx)
    return out, with_stored_state(new_state, ctx.new_optimizer_state)


def _muon_vector_rule(momentum: float, nesterov: bool, weight_decay: float) -> Callable[..., None]:
    """Muon's momentum and decay for a vector (bias), without the orthogonalisation.

    Muon's official code leaves non-matrix parameters to another optimizer; here they take
    Muon's own momentum step at the same rate, so one ``lr`` drives the whole model.
    """

    def rule(param: Tensor, grad: Tensor, state: dict[str, Any], lr: float) -> None:
        if not state:
            state["momentum_buffer"] = torch.zeros_like(param)
            state["step"] = 0
        buffer = state["momentum_buffer"]
        buffer.lerp_(grad, 1.0 - momentum)
        direction = grad.lerp(buffer, momentum) if nesterov else buffer
        param.mul_(1.0 - lr * weight_decay)
        param.add_(direction, alpha=-lr)
        state["step"] += 1

    return rule


def build_flat_optimizer(y: Tensor, layout: Layout, options: Any, cfg: Any, lr: float) -> FlatOptimizer:
    """The torch optimizer of ``options`` over views of ``y`` (not for ``sgd``/``sam``)."""
    wd = cfg.weight_decay
    if options.name in ("adam", "adamp"):
        delta = 0.0 if options.name == "adam" else options.delta  # δ = 0: the test never fires
        extra = {} if options.name == "adam" else {"wd_ratio": options.wd_ratio, "nesterov": options.nesterov}
        return FlatOptimizer(
            y,
            layout,
            lambda params, rate: AdamP(
                params, lr=rate, betas=options.betas, eps=options.eps, weight_decay=wd, delta=delta, **extra
            ),
            lr,
        )
    if options.name == "sgdp":
        return FlatOptimizer(
            y,
            layout,
            lambda params, rate: SGDP(
                params,
                lr=rate,
                momentum=cfg.momentum,
                dampening=options.dampening,
                weight_decay=wd,
                nesterov=options.nesterov,
                eps=options.eps,
                delta=options.delta,
                wd_ratio=options.wd_ratio,
            ),
            lr,
        )
    return FlatOptimizer(
        y,
        layout,
        lambda params, rate: Muon(
            params,
            lr=rate,
            momentum=options.momentum,
            nesterov=options.nesterov,
            weight_decay=wd,
            ns_steps=options.ns_steps,
        ),
        lr,
        takes=lambda block: len(block.shape) >= 2,
        aux=_muon_vector_rule(options.momentum, options.nesterov, wd),
        matrix_view=True,
    )


class LayerCut:
    """Drop-Muon's starting layer s (uniform on 0..max) and which blocks it leaves trainable."""

    def __init__(self, layout: Layout, options: DropMuonOptions, ctx: ClientContext) -> None:
        last = layout.num_layers - 1
        self.top = last if options.max_start_layer is None else min(options.max_start_layer, last)
        self.layout = layout
        # Its own stream, keyed by the client's batch stream: cuts never shift the minibatches.
        self.generator = torch_rng(ctx.generator.initial_seed(), "client_optimizer.cut", ctx.client)
        self.lowest = layout.num_layers

    def draw(self) -> list[bool]:
        cut = int(torch.randint(self.top + 1, (1,), generator=self.generator))
        self.lowest = min(self.lowest, cut)
        return [block.layer >= cut for block in self.layout.blocks]

    def upload_from(self) -> int:
        """Offset of the lowest layer trained this round: the tail from there is what changed."""
        return self.layout.layer_offset(self.lowest)


def optimizer_training(
    start: Tensor,
    ctx: ClientContext,
    cfg: Any,
    num_steps: int,
    *,
    correction: Callable[[Tensor, Tensor], Tensor] | None = None,
    gradient: Callable[[Tensor, Batch], Tensor] | None = None,
    after_clip: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """K local steps with the configured client optimizer (any but plain ``sgd``).

    The gradient the optimizer sees is the algorithm's: oracle (or SAM's), then its
    ``correction``, then clipping, exactly as in :func:`local_sgd`.
    """
    options = cfg.client_optimizer
    persisted = ctx.optimizer_state if options.state == "persist" else {}
    if options.name in ("sgd", "sam"):
        if options.name == "sam":
            gradient = sam_oracle(ctx, options.rho, eps=options.perturb_eps)
        holder = dict(persisted)
        y = local_sgd(
            start,
            ctx,
            num_steps,
            correction=correction,
            gradient=gradient,
            after_clip=after_clip,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            clip_norm=cfg.clip_norm,
            momentum_state=holder,
        )
        ctx.new_optimizer_state = holder if options.state == "persist" else None
        return y
    if after_clip is not None:
        raise ValueError(f"client optimizer {options.name!r} does not take an after-clip term")
    y = start.clone()
    layout = layout_of(ctx.objective)
    optimizer = build_flat_optimizer(y, layout, options, cfg, ctx.lr)
    optimizer.import_state(persisted)
    cut = LayerCut(layout, options, ctx) if options.name == "drop_muon" else None
    active = cut.draw() if cut is not None else None
    stream = ctx.batches()
    oracle = gradient if gradient is not None else ctx.grad
    for step in range(num_steps):
        if cut is not None and step > 0 and options.resample == "step":
            active = cut.draw()
        batch = next(stream)
        g = oracle(y, batch)
        if correction is not None:
            g = correction(y, g)
        optimizer.step(clip_by_norm(g, cfg.clip_norm), active)
        ctx.steps += 1
    if cut is not None:
        ctx.upload_from = cut.upload_from()
    ctx.new_optimizer_state = optimizer.export_state() if options.state == "persist" else None
    return y


def check_state_is_kept(algorithm: type, options: Any, momentum: float) -> None:
    """``state: persist`` only where local steps run a client optimizer that has state.

    The compressed one-step methods, dpsgd and the event-driven methods take each gradient
    without a client optimizer (their class says ``has_local_steps = False``), so a persist
    setting would keep nothing and change nothing: refused rather than ignored. Only an
    explicit persist can trip this; the default is ``reset``. Plain SGD (and SAM, SGDP) without
    momentum has no state either.
    """
    if options.state != "persist":
        return
    from flsim.config.errors import ConfigError

    if not getattr(algorithm, "has_local_steps", True):
        reason = f"{algorithm.name!r} has no local steps, so no optimizer state to keep; use reset"
        raise ConfigError("algorithm.client_optimizer.state", options.state, reason)
    if options.name in ("sgd", "sam", "sgdp") and momentum == 0:
        reason = f"{options.name} without algorithm.momentum keeps no state between steps; use reset"
        raise ConfigError("algorithm.client_optimizer.state", options.state, reason)


def check_client_optimizer_scenario(scenario: Any) -> None:
    """Registered scenario check: :func:`check_against_scenario` and :func:`check_state_is_kept`
    on the parsed algorithm."""
    from flsim.algorithms.base import REGISTRY, parse_algorithm_config

    config = parse_algorithm_config(scenario.algorithm)
    check_against_scenario(config.client_optimizer, scenario)
    momentum = float(getattr(config, "momentum", 0.0) or 0.0)
    check_state_is_kept(REGISTRY[config.name], config.client_optimizer, momentum)


register_check("client_optimizer", check_client_optimizer_scenario)
