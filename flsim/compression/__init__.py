"""Compressors with exact byte accounting, error feedback as a channel, and EF kernels.

See ALGORITHMS.md section E. Layout:

* :mod:`~flsim.compression.compressors` — identity, top-k, rand-k, QSGD, scaled sign, natural;
* :mod:`~flsim.compression.channel` — :class:`UplinkChannel` (none / ef14 / ef21 / econtrol)
  with explicit client and server state;
* :mod:`~flsim.compression.kernels` — literal one-step recursions E1–E5 for n clients;
* :mod:`~flsim.compression.config` — the ``compression`` scenario section and factories.
"""

from flsim.compression.channel import (
    ClientChannelState,
    ErrorFeedback,
    MirrorState,
    ServerChannelState,
    UplinkChannel,
)
from flsim.compression.compressors import (
    QSGD,
    Compressed,
    Compressor,
    Identity,
    Natural,
    RandK,
    ScaledSign,
    ScaledToContractive,
    TopK,
    index_width,
)
from flsim.compression.config import (
    CompressionConfig,
    CompressorConfig,
    build_compressor,
    build_downlink_channel,
    build_uplink_channel,
    parse_compression,
)
from flsim.compression.kernels import (
    EControlState,
    EF14State,
    EF21State,
    compressed_sgd_step,
    econtrol_init,
    econtrol_step,
    ef14_init,
    ef14_step,
    ef21_init,
    ef21_step,
)

__all__ = [
    "QSGD",
    "ClientChannelState",
    "Compressed",
    "CompressionConfig",
    "Compressor",
    "CompressorConfig",
    "EControlState",
    "EF14State",
    "EF21State",
    "ErrorFeedback",
    "Identity",
    "MirrorState",
    "Natural",
    "RandK",
    "ScaledSign",
    "ScaledToContractive",
    "ServerChannelState",
    "TopK",
    "UplinkChannel",
    "build_compressor",
    "build_downlink_channel",
    "build_uplink_channel",
    "compressed_sgd_step",
    "econtrol_init",
    "econtrol_step",
    "ef14_init",
    "ef14_step",
    "ef21_init",
    "ef21_step",
    "index_width",
    "parse_compression",
]
