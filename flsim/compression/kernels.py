"""One step of EControl, EF14, EF21 and uncorrected compressed SGD for n clients (docs/algorithms.md E).

These are the literal recursions of section E, written as pure functions over tensors: every
step takes the iterate and a frozen state and returns new ones, never modifying its inputs. They
serve as the reference the tests check the identities of section E against, and as the kernels
of the lead's single-process EF algorithm classes. (Inside federated algorithms with local steps,
use :class:`flsim.compression.channel.UplinkChannel` instead; it applies the same maths to any
message.)

Conventions shared by all kernels:

* ``grad(i, x)`` is the gradient oracle of client i (full or stochastic); it is called exactly
  once per client per step, in client order.
* ``generators[i]`` feeds client i's compressor (``None`` entries, or ``generators=None``, for
  deterministic compressors). A stateful ``torch.Generator`` advances as it is used; pass fresh
  ones per step (``torch_rng(seed, "compression", i, t)``) for step-addressable draws.
* Means over clients are ``torch.stack(...).mean(0)`` in client order, so two kernels that do the
  same arithmetic agree bit for bit (property (c) is tested with ``torch.equal``).
* The returned byte count is the uplink traffic of the step, summed over clients (the broadcast
  of x is the same for all methods and left to the caller).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from flsim.compression.compressors import Compressed, Compressor

__all__ = [
    "EControlState",
    "EF14State",
    "EF21State",
    "GradOracle",
    "compressed_sgd_step",
    "econtrol_init",
    "econtrol_step",
    "ef14_init",
    "ef14_step",
    "ef21_init",
    "ef21_step",
]

GradOracle = Callable[[int, Tensor], Tensor]
Generators = Sequence[torch.Generator | None] | None


def _generator(generators: Generators, i: int) -> torch.Generator | None:
    return None if generators is None else generators[i]


def _mean(vectors: Sequence[Tensor]) -> Tensor:
    """Mean over clients in client order (one fixed reduction, shared by all kernels)."""
    return torch.stack(list(vectors)).mean(0)


def _dense_nbytes(v: Tensor) -> int:
    return int(v.numel()) * v.element_size()


@dataclass(frozen=True)
class EControlState:
    """EControl state (E, "State"): per client e_i and h_i; on the server h = mean h_i."""

    e: tuple[Tensor, ...]
    h: tuple[Tensor, ...]
    h_mean: Tensor


def econtrol_init(x0: Tensor, grad: GradOracle, num_clients: int) -> tuple[EControlState, int]:
    """E "Init": e_i = 0, h_i = g_i(x⁰), each h_i sent once uncompressed (d values per client)."""
    h = tuple(grad(i, x0) for i in range(num_clients))
    e = tuple(torch.zeros_like(hi) for hi in h)
    return EControlState(e=e, h=h, h_mean=_mean(h)), sum(_dense_nbytes(hi) for hi in h)


def econtrol_step(
    x: Tensor,
    state: EControlState,
    grad: GradOracle,
    gamma: float,
    eta: float,
    compressor: Compressor,
    generators: Generators = None,
) -> tuple[Tensor, EControlState, int]:
    """One EControl step, (E1) on every client then (E2) on the server.

    (E1) Δ_i = C(η e_i + g_i − h_i); e_i ← e_i + g_i − h_i − Δ_i; h_i ← h_i + Δ_i.
    (E2) Δ = mean Δ_i; x ← x − γ (h + Δ); h ← h + Δ.

    g_i − h_i is formed once and reused in both client lines, so with e_i = 0 and C = identity
    the error stays exactly 0 (property (a)); h + Δ is formed once and is both the step and the
    new h, which makes η = 0 bit-identical to :func:`ef21_step` (property (c)).
    """
    e_new: list[Tensor] = []
    h_new: list[Tensor] = []
    deltas: list[Tensor] = []
    nbytes = 0
    for i, (ei, hi) in enumerate(zip(state.e, state.h, strict=True)):
        u = grad(i, x) - hi
        msg: Compressed = compressor.compress(eta * ei + u, _generator(generators, i))
        deltas.append(msg.value)
        e_new.append(ei + u - msg.value)
        h_new.append(hi + msg.value)
        nbytes += msg.nbytes
    estimate = state.h_mean + _mean(deltas)
    return x - gamma * estimate, EControlState(e=tuple(e_new), h=tuple(h_new), h_mean=estimate), nbytes


@dataclass(frozen=True)
class EF14State:
    """EF14 state: the per-client error e_i (E3)."""

    e: tuple[Tensor, ...]


def ef14_init(x0: Tensor, num_clients: int) -> EF14State:
    """e_i = 0. Nothing is sent."""
    return EF14State(e=tuple(torch.zeros_like(x0) for _ in range(num_clients)))


def ef14_step(
    x: Tensor,
    state: EF14State,
    grad: GradOracle,
    gamma: float,
    compressor: Compressor,
    generators: Generators = None,
) -> tuple[Tensor, EF14State, int]:
    """One EF14 step (E3): p_i = γ g_i + e_i; Δ_i = C(p_i); e_i ← p_i − Δ_i; x ← x − mean Δ_i."""
    e_new: list[Tensor] = []
    deltas: list[Tensor] = []
    nbytes = 0
    for i, ei in enumerate(state.e):
        p = gamma * grad(i, x) + ei
        msg = compressor.compress(p, _generator(generators, i))
        deltas.append(msg.value)
        e_new.append(p - msg.value)
        nbytes += msg.nbytes
    return x - _mean(deltas), EF14State(e=tuple(e_new)), nbytes


@dataclass(frozen=True)
class EF21State:
    """EF21 state (E4): per client g_i, on the server g = mean g_i."""

    g: tuple[Tensor, ...]
    g_mean: Tensor


def ef21_init(x0: Tensor, grad: GradOracle, num_clients: int) -> tuple[EF21State, int]:
    """E4 "Init": g_i = ∇f_i(x⁰), each sent once uncompressed."""
    g = tuple(grad(i, x0) for i in range(num_clients))
    return EF21State(g=g, g_mean=_mean(g)), sum(_dense_nbytes(gi) for gi in g)


def ef21_step(
    x: Tensor,
    state: EF21State,
    grad: GradOracle,
    gamma: float,
    compressor: Compressor,
    generators: Generators = None,
) -> tuple[Tensor, EF21State, int]:
    """One EF21 step (E4): x ← x − γ g; c_i = C(∇f_i(x) − g_i); g_i ← g_i + c_i; g ← g + mean c_i.

    The gradients are taken at the *new* x, as in E4; the returned state's g is what the next
    step moves along.
    """
    x_new = x - gamma * state.g_mean
    g_new: list[Tensor] = []
    cs: list[Tensor] = []
    nbytes = 0
    for i, gi in enumerate(state.g):
        msg = compressor.compress(grad(i, x_new) - gi, _generator(generators, i))
        cs.append(msg.value)
        g_new.append(gi + msg.value)
        nbytes += msg.nbytes
    return x_new, EF21State(g=tuple(g_new), g_mean=state.g_mean + _mean(cs)), nbytes


def compressed_sgd_step(
    x: Tensor,
    num_clients: int,
    grad: GradOracle,
    gamma: float,
    compressor: Compressor,
    generators: Generators = None,
) -> tuple[Tensor, int]:
    """One step of compressed SGD without correction (E5): x ← x − γ mean C(g_i). Stateless."""
    values: list[Tensor] = []
    nbytes = 0
    for i in range(num_clients):
        msg = compressor.compress(grad(i, x), _generator(generators, i))
        values.append(msg.value)
        nbytes += msg.nbytes
    return x - gamma * _mean(values), nbytes
