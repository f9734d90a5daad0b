"""The ``compression`` scenario section: validation with dotted keys, and the factories."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from flsim.compression import (
    QSGD,
    ClientChannelState,
    CompressionConfig,
    CompressorConfig,
    Identity,
    Natural,
    RandK,
    ScaledSign,
    ScaledToContractive,
    TopK,
    build_compressor,
    build_downlink_channel,
    build_uplink_channel,
    parse_compression,
)
from flsim.config.errors import ConfigError, ConfigErrors


@pytest.mark.parametrize(
    ("raw", "key", "fragment"),
    [
        ({"uplink": {"kind": "topk"}}, "compression.uplink.k", "exactly one of k and fraction"),
        ({"uplink": {"kind": "randk", "k": 3, "fraction": 0.1}}, "compression.uplink.k", "exactly one"),
        ({"uplink": {"kind": "topk", "k": 0}}, "compression.uplink.k", "greater than or equal to 1"),
        ({"uplink": {"kind": "topk", "fraction": 0.0}}, "compression.uplink.fraction", "greater than 0"),
        ({"uplink": {"kind": "topk", "fraction": 1.5}}, "compression.uplink.fraction", "less than or equal"),
        ({"uplink": {"kind": "qsgd"}}, "compression.uplink.levels", "qsgd needs levels"),
        (
            {"uplink": {"kind": "qsgd", "levels": 0}},
            "compression.uplink.levels",
            "greater than or equal to 1",
        ),
        ({"uplink": {"kind": "sign", "k": 3}}, "compression.uplink.k", "only used by topk and randk"),
        ({"uplink": {"kind": "sign", "fraction": 0.5}}, "compression.uplink.fraction", "only used by topk"),
        ({"uplink": {"kind": "topk", "k": 1, "levels": 2}}, "compression.uplink.levels", "only used by qsgd"),
        (
            {"uplink": {"kind": "topk", "k": 1, "shared_seed": True}},
            "compression.uplink.shared_seed",
            "randk",
        ),
        (
            {"uplink": {"kind": "topk", "k": 1, "scale_to_contractive": True}},
            "compression.uplink.scale_to_contractive",
            "not unbiased",
        ),
        ({"uplink": {"kind": "topk", "k": 1, "kk": 2}}, "compression.uplink.kk", "Extra inputs"),
        ({"uplink": {"kind": "top-k", "k": 1}}, "compression.uplink.kind", "Input should be"),
        ({"error_feedback": "ef21"}, "compression.error_feedback", "needs an uplink compressor"),
        (
            {"uplink": {"kind": "randk", "k": 2}, "error_feedback": "econtrol"},
            "compression.error_feedback",
            "scale_to_contractive",
        ),
        ({"uplink": {"kind": "topk", "k": 1}, "error_feedback": "ef"}, "compression.error_feedback", "Input"),
        ({"uplink": {"kind": "topk", "k": 1}, "eta": 0.5}, "compression.eta", "only used by error_feedback"),
        (
            {"uplink": {"kind": "topk", "k": 1}, "error_feedback": "econtrol", "eta": -0.1},
            "compression.eta",
            "greater than or equal to 0",
        ),
        ({"uplinks": {}}, "compression.uplinks", "Extra inputs"),
    ],
)
def test_bad_configs_name_the_dotted_key(raw: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_compression(raw)
    assert info.value.key == key
    assert fragment in info.value.reason


def test_several_errors_are_reported_together() -> None:
    with pytest.raises(ConfigErrors) as info:
        parse_compression({"uplink": {"kind": "qsgd"}, "downlink": {"kind": "topk"}})
    assert {e.key for e in info.value.errors} == {"compression.uplink.levels", "compression.downlink.k"}


def test_default_is_no_compression() -> None:
    cfg = parse_compression(None)
    assert cfg == CompressionConfig() and cfg.error_feedback == "none"
    channel = build_uplink_channel(cfg)
    assert isinstance(channel.compressor, Identity) and not channel.stateful


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"kind": "identity"}, Identity()),
        ({"kind": "topk", "k": 3}, TopK(k=3)),
        ({"kind": "topk", "fraction": 0.1}, TopK(fraction=0.1)),
        ({"kind": "randk", "k": 3, "shared_seed": True}, RandK(k=3, shared_seed=True)),
        ({"kind": "qsgd", "levels": 4}, QSGD(levels=4)),
        ({"kind": "sign"}, ScaledSign()),
        ({"kind": "natural"}, Natural()),
        ({"kind": "natural", "scale_to_contractive": True}, ScaledToContractive(Natural())),
    ],
)
def test_build_compressor(raw: dict[str, Any], expected: object) -> None:
    assert build_compressor(CompressorConfig.model_validate(raw)) == expected


def test_channels_and_default_eta() -> None:
    cfg = parse_compression(
        {
            "uplink": {"kind": "topk", "fraction": 0.05},
            "downlink": {"kind": "qsgd", "levels": 8},
            "error_feedback": "econtrol",
        }
    )
    up, down = build_uplink_channel(cfg), build_downlink_channel(cfg)
    assert up.error_feedback == "econtrol" and up.compressor == TopK(fraction=0.05)
    assert cfg.resolve_eta(200) == up.effective_eta(200) == 10 / 200  # δ = k/d
    assert down.error_feedback == "none" and down.compressor == QSGD(levels=8)
    explicit = parse_compression({"uplink": {"kind": "sign"}, "error_feedback": "econtrol", "eta": 0.2})
    assert explicit.resolve_eta(10) == build_uplink_channel(explicit).effective_eta(10) == 0.2
    assert parse_compression({"uplink": {"kind": "sign"}, "error_feedback": "ef21"}).resolve_eta(10) is None


def test_scaled_unbiased_compressor_is_accepted_under_error_feedback() -> None:
    cfg = parse_compression(
        {"uplink": {"kind": "randk", "k": 4, "scale_to_contractive": True}, "error_feedback": "ef21"}
    )
    channel = build_uplink_channel(cfg)
    assert channel.compressor.contractive and channel.compressor.delta(40) == pytest.approx(0.1)
    first, state = channel.encode(torch.ones(40), ClientChannelState(), torch.Generator().manual_seed(0))
    second, _ = channel.encode(2 * torch.ones(40), state, torch.Generator().manual_seed(0))
    assert first.reset and not second.reset
    assert second.nbytes == 4 * (4 + 1) and int(torch.count_nonzero(second.value)) == 4
