"""The ``compression`` section of a scenario, and the factories that turn it into objects.

Scenario shape (every key optional; the default is no compression)::

    compression:
      uplink:   {kind: topk, fraction: 0.01}    # or k: 10; randk likewise
      downlink: {kind: qsgd, levels: 4}
      error_feedback: econtrol                  # none | ef14 | ef21 | econtrol
      eta: null                                 # EControl η; null → δ(d) of the uplink compressor
      choco: {consensus_lr: 0.5}                # decentralized runs: CHOCO-Gossip on compressed gossip

Cross-field rules live in field validators, so that a pydantic error's ``loc`` already names
the offending key (``compression.uplink.k``) and :func:`parse_compression` can turn it into a
:class:`~flsim.config.errors.ConfigError` without guessing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from flsim.config.errors import ConfigError, ConfigErrors
from flsim.config.sections import register_section

if TYPE_CHECKING:  # torch-backed; imported by the factories only, so loading a scenario stays light
    from flsim.compression.channel import UplinkChannel
    from flsim.compression.compressors import Compressor

__all__ = [
    "ChocoConfig",
    "CompressionConfig",
    "CompressorConfig",
    "CompressorKind",
    "build_compressor",
    "build_downlink_channel",
    "build_uplink_channel",
    "parse_compression",
]

CompressorKind = Literal["identity", "topk", "randk", "qsgd", "sign", "natural"]
ErrorFeedback = Literal["none", "ef14", "ef21", "econtrol"]
_SPARSIFIERS = ("topk", "randk")
_UNBIASED = ("randk", "qsgd", "natural")
_CONTRACTIVE = ("identity", "topk", "sign")


class CompressorConfig(BaseModel):
    """One compressor. ``k`` / ``fraction`` for topk and randk (exactly one), ``levels`` for qsgd.

    ``shared_seed`` (randk only) counts rand-k messages as values + an 8-byte seed instead of
    values + indices. ``scale_to_contractive`` (randk, qsgd, natural) divides by 1 + ω so that
    the compressor is contractive with δ = 1/(1 + ω) and can be used under error feedback.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    kind: CompressorKind
    fraction: float | None = Field(None, gt=0, le=1, description="Share of coordinates kept (topk, randk).")
    k: int | None = Field(None, ge=1, validate_default=True, description="Coordinates kept (topk, randk).")
    levels: int | None = Field(None, ge=1, validate_default=True, description="QSGD levels s.")
    shared_seed: bool = False
    scale_to_contractive: bool = False

    @field_validator("fraction")
    @classmethod
    def _fraction_only_for_sparsifiers(cls, value: float | None, info: ValidationInfo) -> float | None:
        kind = info.data.get("kind")
        if value is not None and kind is not None and kind not in _SPARSIFIERS:
            raise ValueError(f"fraction is only used by topk and randk, not {kind}")
        return value

    @field_validator("k")
    @classmethod
    def _k_or_fraction(cls, value: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("kind")
        if kind is None or "fraction" not in info.data:  # an earlier field already failed
            return value
        if kind not in _SPARSIFIERS:
            if value is not None:
                raise ValueError(f"k is only used by topk and randk, not {kind}")
            return value
        if (value is None) == (info.data["fraction"] is None):
            raise ValueError(f"{kind} needs exactly one of k and fraction")
        return value

    @field_validator("levels")
    @classmethod
    def _levels_for_qsgd(cls, value: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("kind")
        if kind == "qsgd" and value is None:
            raise ValueError("qsgd needs levels (the number s of quantisation levels, >= 1)")
        if kind is not None and kind != "qsgd" and value is not None:
            raise ValueError(f"levels is only used by qsgd, not {kind}")
        return value

    @field_validator("shared_seed")
    @classmethod
    def _shared_seed_for_randk(cls, value: bool, info: ValidationInfo) -> bool:
        kind = info.data.get("kind")
        if value and kind is not None and kind != "randk":
            raise ValueError(f"shared_seed is only used by randk, not {kind}")
        return value

    @field_validator("scale_to_contractive")
    @classmethod
    def _scaling_for_unbiased(cls, value: bool, info: ValidationInfo) -> bool:
        kind = info.data.get("kind")
        if value and kind is not None and kind not in _UNBIASED:
            raise ValueError(
                f"scale_to_contractive applies to randk, qsgd and natural; {kind} is not unbiased"
            )
        return value

    @property
    def contractive(self) -> bool:
        """Whether :func:`build_compressor` returns a contractive operator."""
        return self.kind in _CONTRACTIVE or self.scale_to_contractive


class ChocoConfig(BaseModel):
    """CHOCO-Gossip for decentralized runs (Koloskova, Stich and Jaggi, ICML 2019, Alg. 1).

    ``consensus_lr`` is γ, the consensus step size. It has no safe default: the paper's
    theoretical value depends on the spectral gap and on the compressor's δ, and a γ too
    large for an aggressive compressor diverges, so the scenario must choose it.
    """

    model_config = ConfigDict(extra="forbid")

    consensus_lr: float = Field(gt=0, le=1, description="γ of CHOCO-Gossip.")


class CompressionConfig(BaseModel):
    """Compression of each direction, and the error feedback wrapped around the uplink."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    uplink: CompressorConfig | None = None
    downlink: CompressorConfig | None = None
    error_feedback: ErrorFeedback = "none"
    eta: float | None = Field(None, ge=0, le=1, description="EControl feedback strength; null → δ(d).")
    choco: ChocoConfig | None = None

    @field_validator("choco")
    @classmethod
    def _choco_needs_contractive_uplink(cls, value: ChocoConfig | None, info: ValidationInfo) -> Any:
        if value is None or "uplink" not in info.data:
            return value
        uplink: CompressorConfig | None = info.data["uplink"]
        if uplink is None:
            raise ValueError("CHOCO corrects compressed gossip: set compression.uplink as well")
        if not uplink.contractive:
            raise ValueError(
                f"CHOCO needs a contractive compressor; {uplink.kind} is unbiased, not contractive: "
                "set uplink.scale_to_contractive: true or use topk / sign"
            )
        return value

    @field_validator("error_feedback")
    @classmethod
    def _feedback_needs_contractive_uplink(cls, value: str, info: ValidationInfo) -> str:
        if value == "none" or "uplink" not in info.data:
            return value
        uplink: CompressorConfig | None = info.data["uplink"]
        if uplink is None:
            raise ValueError(f"{value} needs an uplink compressor (compression.uplink)")
        if not uplink.contractive:
            raise ValueError(
                f"{value} needs a contractive uplink compressor; {uplink.kind} is unbiased, not "
                "contractive: set uplink.scale_to_contractive: true or use topk / sign"
            )
        return value

    @field_validator("eta")
    @classmethod
    def _eta_only_for_econtrol(cls, value: float | None, info: ValidationInfo) -> float | None:
        feedback = info.data.get("error_feedback")
        if value is not None and feedback is not None and feedback != "econtrol":
            raise ValueError(f"eta is only used by error_feedback: econtrol, not {feedback}")
        return value

    def resolve_eta(self, d: int) -> float | None:
        """η for length-``d`` messages: the configured one, δ(d) of the uplink, or ``None`` (not econtrol)."""
        if self.error_feedback != "econtrol":
            return None
        if self.eta is not None:
            return self.eta
        assert self.uplink is not None
        return build_compressor(self.uplink).delta(d)


register_section("compression", CompressionConfig)  # the scenario's section is this model


def build_compressor(cfg: CompressorConfig | None) -> Compressor:
    """The operator a validated :class:`CompressorConfig` describes (``None`` → identity)."""
    from flsim.compression.compressors import (
        QSGD,
        Identity,
        Natural,
        RandK,
        ScaledSign,
        ScaledToContractive,
        TopK,
    )

    if cfg is None:
        return Identity()
    base: Compressor
    if cfg.kind == "identity":
        base = Identity()
    elif cfg.kind == "topk":
        base = TopK(k=cfg.k, fraction=cfg.fraction)
    elif cfg.kind == "randk":
        base = RandK(k=cfg.k, fraction=cfg.fraction, shared_seed=cfg.shared_seed)
    elif cfg.kind == "qsgd":
        assert cfg.levels is not None
        base = QSGD(levels=cfg.levels)
    elif cfg.kind == "sign":
        base = ScaledSign()
    elif cfg.kind == "natural":
        base = Natural()
    else:  # pragma: no cover - the Literal type rules this out
        raise ValueError(f"unknown compressor kind {cfg.kind!r}")
    return ScaledToContractive(base) if cfg.scale_to_contractive else base


def build_uplink_channel(cfg: CompressionConfig) -> UplinkChannel:
    """The uplink channel: ``cfg.uplink`` (identity if absent) under ``cfg.error_feedback``."""
    from flsim.compression.channel import UplinkChannel

    return UplinkChannel(build_compressor(cfg.uplink), cfg.error_feedback, cfg.eta)


def build_downlink_channel(cfg: CompressionConfig) -> UplinkChannel:
    """The downlink channel: ``cfg.downlink`` (identity if absent), without error feedback.

    Compressing the model x itself loses it; the caller should send a *difference* (e.g.
    x^{t+1} − x^t, or x − the client's last copy) and let clients accumulate it.
    """
    from flsim.compression.channel import UplinkChannel

    return UplinkChannel(build_compressor(cfg.downlink), "none")


def parse_compression(raw: Mapping[str, Any] | None, prefix: str = "compression") -> CompressionConfig:
    """Validate a raw ``compression`` mapping, raising :class:`ConfigError` with dotted keys.

    One error raises a :class:`ConfigError`; several raise :class:`ConfigErrors` so that a user
    can fix a file in one pass.
    """
    try:
        return CompressionConfig.model_validate(dict(raw or {}))
    except ValidationError as exc:
        errors = [
            ConfigError(
                ".".join([prefix, *(str(part) for part in err["loc"])]),
                err.get("input"),
                err["msg"].removeprefix("Value error, "),
            )
            for err in exc.errors()
        ]
    if len(errors) == 1:
        raise errors[0]
    raise ConfigErrors(errors)
