"""The ``topology`` section of a scenario: which graph, which gossip weights, which rates.

Only the *shape* of the section is checked here (pydantic, unknown keys rejected so a typo
fails at load time); whether ``params`` suit the chosen ``kind`` and whether the graph has
``task.num_clients`` nodes is checked by building it (:func:`check_graph`, with the dotted
key named). Both register here with :mod:`flsim.config.sections`: this part owns the section.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

from flsim.config.sections import register_check, register_section

MixingName = Literal["metropolis", "max_degree", "best_constant", "uniform", "fdla", "fmmc"]
CYCLE_ENTRY_KEYS = frozenset({"kind", "params", "file"})


class TopologyConfig(BaseModel):
    """A graph by builder (``kind`` + ``params``) or by ``file``, plus how it is used.

    ``mixing``: the gossip weights (docs/algorithms.md G1-G5; ``uniform`` is J on the complete
    graph). ``solver``: for ``fdla``/``fmmc``, ``sdp`` (interior point), ``cvxpy``,
    ``first_order`` or ``auto`` (first order once the exact solve is predicted to take over a
    minute, from its node and edge counts).

    ``time_varying``: ``none``; ``random_each_round`` (a fresh graph of the same random kind
    every round, drawn from a seed derived from (seed, round)); ``cycle`` (round t uses entry
    t mod len of ``cycle`` + ``cycle_files``; an entry is a ``kind``/``params`` mapping or a
    file path); ``k_peers`` (every node averages with ``peers`` random others each round,
    chosen among its neighbours when a graph is given: W is then only row-stochastic, D).
    ``seed`` pins random graphs independently of the scenario seed. ``rates``: per-edge
    Poisson rates of event-driven algorithms, ``uniform`` (A1) or ``sdp`` (A6).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    kind: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    file: str | None = None
    mixing: MixingName = "metropolis"
    solver: Literal["auto", "sdp", "cvxpy", "first_order"] = "auto"
    time_varying: Literal["none", "random_each_round", "cycle", "k_peers"] = "none"
    cycle: list[dict[str, Any] | str] = Field(default_factory=list)
    cycle_files: list[str] = Field(default_factory=list)
    peers: PositiveInt = 2
    seed: int | None = Field(None, ge=0, description="Seed for random graphs; default: the scenario seed.")
    rates: Literal["uniform", "sdp"] = "uniform"

    @field_validator("cycle")
    @classmethod
    def _cycle_entries(cls, entries: list[dict[str, Any] | str]) -> list[dict[str, Any] | str]:
        for index, entry in enumerate(entries):
            if isinstance(entry, dict):
                unknown = sorted(set(entry) - CYCLE_ENTRY_KEYS)
                if unknown:
                    raise ValueError(f"cycle[{index}] has unknown key(s) {unknown}; use kind/params or file")
                if ("kind" in entry) == ("file" in entry):
                    raise ValueError(f"cycle[{index}] needs exactly one of kind or file")
        return entries

    @model_validator(mode="after")
    def _one_source(self) -> TopologyConfig:
        if self.time_varying == "cycle":
            if not self.cycle_entries():
                raise ValueError("time_varying: cycle needs a non-empty cycle (or cycle_files) list")
            return self
        if self.cycle or self.cycle_files:
            raise ValueError("cycle / cycle_files are only used with time_varying: cycle")
        if self.kind is not None and self.file is not None:
            raise ValueError("give either topology.kind or topology.file, not both")
        if self.kind is None and self.file is None and self.time_varying != "k_peers":
            raise ValueError("give one of topology.kind or topology.file")
        if self.time_varying == "random_each_round" and self.file is not None:
            raise ValueError("random_each_round needs a random builder kind, not a file")
        return self

    def cycle_entries(self) -> list[dict[str, Any] | str]:
        """``cycle`` followed by ``cycle_files``: the graphs a cycle goes through, in order."""
        return [*self.cycle, *self.cycle_files]

    def graph_seed(self, scenario_seed: int) -> int:
        """The seed random graphs are drawn from."""
        return self.seed if self.seed is not None else scenario_seed


def check_graph(scenario: Any) -> None:
    """The graphs a run would start from can be built for ``task.num_clients`` nodes.

    Registered as the scenario's ``topology`` check, so a disconnected graph or a wrong node
    count is found by ``flsim validate``, before a run directory exists.
    """
    if scenario.topology is None:
        return
    from flsim.topology.schedule import check_topology  # networkx: only when a graph is given

    check_topology(scenario.topology, scenario.task.num_clients, scenario.seed)


register_section("topology", TopologyConfig)
register_check("topology", check_graph)
