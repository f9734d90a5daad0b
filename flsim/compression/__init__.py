"""Compressors with exact byte accounting, error feedback as a channel, and EF kernels.

See docs/algorithms.md section E. Layout:

* :mod:`~flsim.compression.compressors` — identity, top-k, rand-k, QSGD, scaled sign, natural;
* :mod:`~flsim.compression.channel` — :class:`UplinkChannel` (none / ef14 / ef21 / econtrol)
  with explicit client and server state;
* :mod:`~flsim.compression.kernels` — literal one-step recursions E1–E5 for n clients;
* :mod:`~flsim.compression.config` — the ``compression`` scenario section and factories.

Names are re-exported here but imported on first use (PEP 562), so that loading a scenario,
which needs only the torch-free :mod:`~flsim.compression.config`, does not import torch.
"""

from __future__ import annotations

from flsim.lazy import lazy_exports

#: Public name -> the submodule that defines it.
_SOURCES = {
    "ClientChannelState": "channel",
    "MirrorState": "channel",
    "ServerChannelState": "channel",
    "UplinkChannel": "channel",
    "Compressed": "compressors",
    "Compressor": "compressors",
    "Identity": "compressors",
    "Natural": "compressors",
    "QSGD": "compressors",
    "RandK": "compressors",
    "ScaledSign": "compressors",
    "ScaledToContractive": "compressors",
    "TopK": "compressors",
    "index_width": "compressors",
    "ChocoConfig": "config",
    "CompressionConfig": "config",
    "CompressorConfig": "config",
    "ErrorFeedback": "config",
    "build_compressor": "config",
    "build_downlink_channel": "config",
    "build_uplink_channel": "config",
    "parse_compression": "config",
    "EControlState": "kernels",
    "EF14State": "kernels",
    "EF21State": "kernels",
    "compressed_sgd_step": "kernels",
    "econtrol_init": "kernels",
    "econtrol_step": "kernels",
    "ef14_init": "kernels",
    "ef14_step": "kernels",
    "ef21_init": "kernels",
    "ef21_step": "kernels",
}

__all__ = sorted(_SOURCES)

__getattr__ = lazy_exports(__name__, _SOURCES)
