"""The ``sampling`` section: who takes part in a round, and how their replies are weighted.

``sampling: fixed`` (k of N uniformly without replacement) and ``sampling: bernoulli`` stay
valid as plain words; the mapping form adds kinds with options (docs/building_blocks.md):

* ``{kind: temperature, tau, cooldown: {from, to, rounds}, weighting: draws | importance}``:
  clients drawn with p_k ∝ n_k^{1/τ}; ``importance`` draws them naturally (q_k ∝ n_k) and
  weights each draw by p_k/q_k instead;
* ``{kind: dpp, features: label_histogram, size: fixed | expected, bandwidth}``: diverse
  client sets from a determinantal point process over the clients' label histograms.

A key that belongs to another kind is an error naming it (``sampling.tau`` on a dpp), so a
typo never falls back silently to another sampler.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_serializer,
)
from pydantic.json_schema import JsonSchemaValue

SamplingKind = Literal["fixed", "bernoulli", "temperature", "dpp"]
_KEYS_OF: dict[str, str] = {
    "tau": "temperature",
    "cooldown": "temperature",
    "weighting": "temperature",
    "features": "dpp",
    "size": "dpp",
    "bandwidth": "dpp",
}


class Cooldown(BaseModel):
    """τ_t = from + (to − from) · min(t / rounds, 1): heavy upsampling first, then less."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    start: float = Field(alias="from", gt=0, description="τ at round 0.")
    to: float = Field(gt=0, description="τ from round ``rounds`` on.")
    rounds: PositiveInt = Field(description="Rounds over which τ moves linearly from ``from`` to ``to``.")

    @model_serializer(mode="plain")
    def _with_from(self) -> dict[str, Any]:
        """Written back under the scenario's key ``from`` (``start`` is only the Python name)."""
        return {"from": self.start, "to": self.to, "rounds": self.rounds}


class SamplingConfig(BaseModel):
    """One sampling section; ``kind`` decides which of the other keys may be given."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    kind: SamplingKind = "fixed"
    tau: float | None = Field(None, gt=0, description="temperature: static τ (default 1, natural sampling).")
    cooldown: Cooldown | None = Field(None, description="temperature: τ schedule instead of a static tau.")
    weighting: Literal["draws", "importance"] = Field(
        "draws",
        description="temperature: each draw of p counts once (draws), or natural draws weighted p_k/q_k.",
    )
    features: Literal["label_histogram"] = Field(
        "label_histogram", description="dpp: what a client's similarity is computed from."
    )
    size: Literal["fixed", "expected"] = Field(
        "fixed", description="dpp: exactly the clients per round (k-DPP), or that many on average."
    )
    bandwidth: float | None = Field(
        None, gt=0, description="dpp: RBF kernel width on histograms (default: median pairwise distance)."
    )

    @field_validator("tau", "cooldown", "weighting", "features", "size", "bandwidth")
    @classmethod
    def _belongs_to_kind(cls, value: Any, info: ValidationInfo) -> Any:
        owner = _KEYS_OF[str(info.field_name)]
        if info.data.get("kind") != owner:
            raise ValueError(f"only sampling kind {owner} has this key")
        return value

    @field_validator("cooldown")
    @classmethod
    def _cooldown_or_tau(cls, value: Cooldown | None, info: ValidationInfo) -> Cooldown | None:
        if value is not None and info.data.get("tau") is not None:
            raise ValueError("give either a static tau or a cooldown schedule, not both")
        return value

    @classmethod
    def __get_pydantic_json_schema__(cls, core: Any, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        """The section is the plain word ``fixed`` / ``bernoulli`` or this mapping."""
        mapping = handler.resolve_ref_schema(handler(core))
        return {"anyOf": [{"type": "string", "enum": ["fixed", "bernoulli"]}, mapping]}

    @model_serializer(mode="wrap")
    def _plain_word_when_possible(self, handler: Any) -> Any:
        """``fixed`` and ``bernoulli`` without options serialise as the word (config.yaml as before)."""
        if self.kind in ("fixed", "bernoulli"):
            return self.kind
        data = handler(self)
        own = {key for key, kind in _KEYS_OF.items() if kind == self.kind}
        return {
            key: value for key, value in data.items() if key == "kind" or (key in own and value is not None)
        }

    def temperature(self, round_index: int) -> float:
        """τ of round ``round_index`` (the cooldown's schedule, or the static τ, default 1)."""
        if self.cooldown is None:
            return 1.0 if self.tau is None else self.tau
        c = self.cooldown
        return c.start + (c.to - c.start) * min(round_index / c.rounds, 1.0)


def as_sampling(value: Any) -> Any:
    """The plain words ``fixed`` and ``bernoulli`` as their mapping form."""
    return {"kind": value} if isinstance(value, str) else value
