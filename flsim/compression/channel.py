"""Error feedback as a *channel*: a stateful transform around any algorithm's uplink message.

An algorithm decides *what* a client sends (a gradient, a model delta, ...); the channel decides
*how* it travels: compressed, and with which error-feedback mechanism (docs/algorithms.md E1–E4). The
two are independent, so every algorithm gets every mechanism for free, as in Meta's FLSim
("compression is a channel between client and server", docs/architecture.md §9).

The channel itself is stateless and pure: all state lives in small frozen dataclasses that the
caller stores — :class:`ClientChannelState` with the client (the lead's client-state store),
and on the server either one :class:`MirrorState` per client (:meth:`UplinkChannel.decode`) or
one O(d) :class:`ServerChannelState` for all of them (:meth:`UplinkChannel.aggregate`, the
form that avoids an N × d server, docs/architecture.md §9 anti-pattern).

Mechanisms (v is the message the algorithm wants to send, C the compressor):

* ``none``  — send C(v); the receiver uses C(v). Stateless. (E5 when v is a gradient.)
* ``ef14``  — p = v + e; Δ = C(p); e ← p − Δ; send Δ; the receiver uses Δ. (E3 with v = γ g_i:
  EF14 must wrap a message already scaled by the step size, e.g. a model delta, because the
  error e accumulates in the message's units.)
* ``ef21``  — client and receiver both hold g_i, the last reconstruction. Send c = C(v − g_i);
  both set g_i ← g_i + c; the receiver uses the new g_i. (E4 with v = ∇f_i(x).)
* ``econtrol`` — client holds e_i and h_i, the receiver a mirror of h_i. Send
  Δ = C(η e + v − h); e ← e + v − h − Δ; h ← h + Δ; the receiver uses h_old + Δ = h_new, which is
  the server's estimate h + Δ of E2. (E1 with v = g_i.)

Initialisation (E, "Init"; E4 "Init g_i = ∇f_i(x⁰)"): ef21 / econtrol clients start *empty*. The
first call sends v uncompressed (a ``reset`` message, counted at d × value width), sets
g_i = v, resp. h_i = v and e_i = 0, and the receiver reconstructs v exactly. In the literal E1
this step would also send Δ = C(η·0 + v − v) = C(0) = 0; we do not count that empty message.

η for econtrol defaults to δ(d) of the compressor (the spec's tuning grid includes δ).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from flsim.compression.compressors import Compressed, Compressor, Identity
from flsim.compression.config import ErrorFeedback

__all__ = [
    "ERROR_FEEDBACK_KINDS",
    "ClientChannelState",
    "ErrorFeedback",
    "MirrorState",
    "ServerChannelState",
    "UplinkChannel",
]

ERROR_FEEDBACK_KINDS: tuple[str, ...] = ("none", "ef14", "ef21", "econtrol")


def _dense_nbytes(v: Tensor) -> int:
    """Size of an uncompressed vector: d values at the dtype's width."""
    return int(v.numel()) * v.element_size()


@dataclass(frozen=True)
class ClientChannelState:
    """What one client keeps between calls. Empty (all ``None``) until its first message.

    Attributes:
        error: e_i — the accumulated compression error (ef14, econtrol); ``None`` otherwise.
        shift: h_i (econtrol) or g_i (ef21) — the reconstruction the receiver also holds.
    """

    error: Tensor | None = None
    shift: Tensor | None = None

    def as_dict(self, prefix: str = "") -> dict[str, Tensor]:
        """Tensors only, for a checkpoint or the engine's client-state store (``dict[str, Tensor]``).

        ``prefix`` (e.g. ``"channel."``) keeps the keys apart from an algorithm's own state in the
        same dict. An empty state gives an empty dict. Inverse of :meth:`from_dict`.
        """
        out: dict[str, Tensor] = {}
        if self.error is not None:
            out[prefix + "error"] = self.error
        if self.shift is not None:
            out[prefix + "shift"] = self.shift
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Tensor], prefix: str = "") -> ClientChannelState:
        """Rebuild from :meth:`as_dict` output; other keys in ``data`` are ignored."""
        return cls(error=data.get(prefix + "error"), shift=data.get(prefix + "shift"))


@dataclass(frozen=True)
class MirrorState:
    """The receiver's per-client copy of h_i / g_i (ef21, econtrol); ``None`` before the first message."""

    shift: Tensor | None = None

    def as_dict(self) -> dict[str, Tensor]:
        """Tensors only, for a checkpoint; empty before the first message."""
        return {} if self.shift is None else {"shift": self.shift}

    @classmethod
    def from_dict(cls, data: Mapping[str, Tensor]) -> MirrorState:
        return cls(shift=data.get("shift"))


@dataclass(frozen=True)
class ServerChannelState:
    """O(d) server state for all clients at once: the mean (1/N) Σ_i h_i over *all* N clients.

    A client that has not sent yet counts with h_i = 0, so a reset message adds v_i/N. With
    partial participation this gives the EF21-PP / EControl estimate of E2 (h = mean h_i over
    every client, stale ones included), which a mean over the participants would not.
    """

    mean_shift: Tensor | None = None

    def as_dict(self) -> dict[str, Tensor]:
        """Tensors only, for a checkpoint; empty before the first message."""
        return {} if self.mean_shift is None else {"mean_shift": self.mean_shift}

    @classmethod
    def from_dict(cls, data: Mapping[str, Tensor]) -> ServerChannelState:
        return cls(mean_shift=data.get("mean_shift"))


class UplinkChannel:
    """Compression plus error feedback for one direction of traffic; pure, state passed in and out.

    Args:
        compressor: the operator C.
        error_feedback: ``none``, ``ef14``, ``ef21`` or ``econtrol``; the last three require a
            contractive C (E, first line).
        eta: EControl's feedback strength η ≥ 0; ``None`` means δ(d) of ``compressor``. Ignored
            by the other mechanisms.
    """

    def __init__(
        self,
        compressor: Compressor | None = None,
        error_feedback: ErrorFeedback = "none",
        eta: float | None = None,
    ) -> None:
        if error_feedback not in ERROR_FEEDBACK_KINDS:
            raise ValueError(f"unknown error feedback {error_feedback!r}; use one of {ERROR_FEEDBACK_KINDS}")
        self.compressor: Compressor = compressor if compressor is not None else Identity()
        if error_feedback != "none" and not self.compressor.contractive:
            raise ValueError(
                f"{error_feedback} needs a contractive compressor; {self.compressor.name} is not "
                "(wrap it in ScaledToContractive)"
            )
        if eta is not None and eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        self.error_feedback: ErrorFeedback = error_feedback
        self.eta = eta

    def __repr__(self) -> str:
        return f"UplinkChannel({self.compressor!r}, {self.error_feedback!r}, eta={self.eta!r})"

    @property
    def stateful(self) -> bool:
        """Whether clients must keep a :class:`ClientChannelState` between calls."""
        return self.error_feedback != "none"

    @property
    def mirrored(self) -> bool:
        """Whether the receiver keeps a mirror (ef21, econtrol) rather than using messages as is."""
        return self.error_feedback in ("ef21", "econtrol")

    def effective_eta(self, d: int) -> float:
        """η used by econtrol on length-``d`` messages: the configured one, else δ(d)."""
        return self.eta if self.eta is not None else self.compressor.delta(d)

    # ------------------------------------------------------------------ client side
    def encode(
        self, v: Tensor, state: ClientChannelState, generator: torch.Generator | None = None
    ) -> tuple[Compressed, ClientChannelState]:
        """Turn the algorithm's message ``v`` into what is sent, and the client's next state.

        ``state`` is not modified. ``generator`` feeds a stochastic compressor and may be
        ``None`` for deterministic ones.
        """
        kind = self.error_feedback
        c = self.compressor
        if kind == "none":
            return c.compress(v, generator), state
        if kind == "ef14":  # E3: p = v + e; Δ = C(p); e ← p − Δ
            p = v if state.error is None else v + state.error
            msg = c.compress(p, generator)
            return msg, ClientChannelState(error=p - msg.value)
        if state.shift is None:  # ef21 / econtrol initialisation: one uncompressed message
            init = v.clone()
            error = torch.zeros_like(v) if kind == "econtrol" else None
            return Compressed(init, _dense_nbytes(v), reset=True), ClientChannelState(error=error, shift=init)
        if kind == "ef21":  # E4: c = C(v − g_i); g_i ← g_i + c
            msg = c.compress(v - state.shift, generator)
            return msg, ClientChannelState(shift=state.shift + msg.value)
        # econtrol, E1: Δ = C(η e + v − h); e ← e + v − h − Δ; h ← h + Δ
        assert state.error is not None
        u = v - state.shift
        eta = self.effective_eta(int(v.numel()))
        msg = c.compress(eta * state.error + u, generator)
        return msg, ClientChannelState(error=state.error + u - msg.value, shift=state.shift + msg.value)

    # ------------------------------------------------------------------ server side, per client
    def decode(self, message: Compressed, mirror: MirrorState) -> tuple[Tensor, MirrorState]:
        """The receiver's reconstruction of one client's message, and the updated mirror.

        Reconstruction: ``none`` / ``ef14`` → the message's value (C(v), resp. Δ); ``ef21`` /
        ``econtrol`` → the new mirror g_i + c, resp. h_i + Δ (E2's h + Δ for a single client).
        The mirror stays bit-identical to the client's ``shift``.
        """
        if not self.mirrored:
            return message.value, mirror
        if message.reset:
            return message.value, MirrorState(shift=message.value)
        if mirror.shift is None:
            raise ValueError(f"{self.error_feedback}: first message of a client must be a reset message")
        new = mirror.shift + message.value
        return new, MirrorState(shift=new)

    # ------------------------------------------------------------------ server side, aggregate
    def aggregate(
        self, messages: Sequence[Compressed], state: ServerChannelState, num_clients: int
    ) -> tuple[Tensor, ServerChannelState]:
        """The server's estimate of the mean message from this round's ``messages``, in O(d).

        ``none`` / ``ef14``: the mean of the received values (over participants). ``ef21`` /
        ``econtrol``: h ← h + (1/N) Σ_{received} value, the estimate being the new h, i.e. the
        mean over all ``num_clients`` clients of their latest reconstruction (E2, E4). A reset
        message contributes its full value, its client having counted as 0 before. Messages are
        summed in the given order; pass them in node-id order (determinism contract).
        """
        if not messages:
            raise ValueError("aggregate needs at least one message")
        total = messages[0].value.clone()
        for m in messages[1:]:
            total = total + m.value
        if not self.mirrored:
            return total / len(messages), state
        base = state.mean_shift if state.mean_shift is not None else torch.zeros_like(total)
        new = base + total / num_clients
        return new, ServerChannelState(mean_shift=new)
