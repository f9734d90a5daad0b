"""Compression as a channel around any round-based algorithm (docs/algorithms.md E; docs/architecture.md §9).

The algorithm decides *what* a client sends; the channel decides *how* it travels. Uplink:
every tensor of a reply goes through the configured compressor and error feedback, with the
channel state kept in the client's own state dict (``channel.<key>.*``), so it lives on the
host that owns the client. What the server receives is the receiver's reconstruction: C(v)
or Δ for ``none``/``ef14``, the mirrored shift h_i (g_i) for ``econtrol``/``ef21``. The
mirror is bit-identical to the client's copy, so no N × d table is needed on the server.

Downlink: the server and all clients track a public model x̂ per broadcast tensor. Each round
the server sends C(v − x̂) and everyone sets x̂ ← x̂ + C(v − x̂) (EF21-P style); the first
broadcast is sent uncompressed. Clients receive x̂ instead of v.
"""

from __future__ import annotations

import torch

from flsim.algorithms.base import Tensors, tensor_bytes
from flsim.compression.channel import ClientChannelState, UplinkChannel
from flsim.compression.config import CompressionConfig, build_downlink_channel, build_uplink_channel

PREFIX = "channel."


def uplink_channel(config: CompressionConfig) -> UplinkChannel | None:
    """``None`` when the uplink is uncompressed and uncorrected: the zero-cost common case."""
    if config.uplink is None and config.error_feedback == "none":
        return None
    return build_uplink_channel(config)


def send_uplink(
    channel: UplinkChannel | None,
    message: Tensors,
    state: Tensors,
    previous: Tensors,
    generator: torch.Generator,
) -> tuple[Tensors, Tensors, int]:
    """(what the server reconstructs, the client's new state, the bytes actually sent).

    ``state`` is what the algorithm's update returned and ``previous`` the client's stored
    state before it. The channel's entries are read from ``previous``: an algorithm that
    returns a fresh dict (SCAFFOLD's ``{"c": c_i⁺}``) knows nothing of them, and reading them
    from its result would restart error feedback every round.
    """
    if channel is None:
        return message, state, tensor_bytes(message)
    received: Tensors = {}
    new_state = dict(state)
    total = 0
    for key in sorted(message):
        prefix = f"{PREFIX}{key}."
        sent, channel_state = channel.encode(
            message[key], ClientChannelState.from_dict(previous, prefix), generator
        )
        received[key] = channel_state.shift if channel.mirrored else sent.value
        new_state.update(channel_state.as_dict(prefix))
        total += sent.nbytes
    return received, new_state, total


class DownlinkChannel:
    """The tracked public model x̂ of every broadcast tensor, kept by the simulation."""

    def __init__(self, config: CompressionConfig) -> None:
        self.channel = build_downlink_channel(config) if config.downlink is not None else None
        self.public: Tensors = {}

    def send(self, message: Tensors, generator: torch.Generator) -> tuple[Tensors, int]:
        """(what every client receives, the bytes of one copy of the broadcast)."""
        if self.channel is None:
            return message, tensor_bytes(message)
        received: Tensors = {}
        total = 0
        for key in sorted(message):
            value = message[key]
            if key not in self.public:
                self.public[key] = value.clone()
                total += value.numel() * value.element_size()
            else:
                sent, _ = self.channel.encode(value - self.public[key], ClientChannelState(), generator)
                self.public[key] = self.public[key] + sent.value
                total += sent.nbytes
            received[key] = self.public[key]
        return received, total
