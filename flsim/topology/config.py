"""The ``topology`` section of a scenario: which graph, which gossip weights, which rates."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

MixingName = Literal["metropolis", "max_degree", "best_constant", "uniform", "fdla", "fmmc"]


class TopologyConfig(BaseModel):
    """A graph by builder (``kind`` + ``params``) or by ``file``, plus its use.

    ``time_varying``: ``none``; ``random_each_round`` (a fresh graph of the same kind every
    round, from a seed derived from the round); ``cycle`` (round t uses ``cycle[t mod len]``,
    each entry a ``kind``/``params`` mapping or a file path); ``k_peers`` (every node averages
    with ``peers`` random others each round: W is only row-stochastic, D).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    kind: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    file: str | None = None
    mixing: MixingName = "metropolis"
    solver: Literal["auto", "sdp", "first_order"] = "auto"
    time_varying: Literal["none", "random_each_round", "cycle", "k_peers"] = "none"
    cycle: list[dict[str, Any] | str] = Field(default_factory=list)
    peers: PositiveInt = 2
    rates: Literal["uniform", "sdp"] = "uniform"

    @model_validator(mode="after")
    def _one_source(self) -> TopologyConfig:
        if self.time_varying == "cycle":
            if not self.cycle:
                raise ValueError("time_varying: cycle needs a non-empty cycle list")
            return self
        if (self.kind is None) == (self.file is None) and self.time_varying != "k_peers":
            raise ValueError("give exactly one of topology.kind or topology.file")
        return self
