"""Pydantic v2 schema of a scenario file.

Every section forbids unknown keys so that a typo (``algorithm.lr_rate``) fails at load
time with the dotted key named, instead of being silently ignored for a whole run.
The sections that parts own are not modelled here: ``compression`` and ``topology`` are
parsed by the models their parts register, ``algorithm`` and ``study`` stay raw mappings that
the parts' registered checks validate after this schema (see :mod:`flsim.config.sections`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    StringConstraints,
    field_validator,
    model_validator,
)

from flsim.config.sampling import SamplingConfig, as_sampling
from flsim.config.sections import OwnedSection

DatasetName = Literal["digits", "linreg", "logreg", "synthetic_leaf", "mnist_idx", "cifar10"]
PartitionKind = Literal["iid", "dirichlet", "shards", "quantity_skew"]
ModelName = Literal["linear", "logreg", "mlp", "cnn"]
#: A scenario tag: short and free of separators, so it reads as one word in a legend.
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:=+\-]+$")]

#: Most gossip nodes (and graph sizes) a scenario may have: every node holds a model.
MAX_CLIENTS = 100_000
#: Most clients a scenario may have. Large synthetic populations are built lazily (issue 17),
#: so 10⁶ phones fit one machine; more than this is a typo (``num_clients: 1e30``), not a plan.
MAX_POPULATION = 10_000_000
#: Most rounds a scenario may ask for.
MAX_ROUNDS = 10_000_000
#: ``seed`` must fit in a signed 64-bit integer: results are stored as int64.
MAX_SEED = (1 << 63) - 1
#: Bernoulli sampling redraws a round in which nobody participates; refuse a participation
#: at which a round would take more than this many draws on average.
MAX_MEAN_DRAWS = 100


class Strict(BaseModel):
    """Base for every section: unknown keys are errors, assignments are re-validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class PartitionConfig(Strict):
    """How a pooled dataset (digits, MNIST, CIFAR-10) is split among clients."""

    kind: PartitionKind = "iid"
    alpha: float = Field(
        0.5, gt=0, description="Dirichlet concentration (dirichlet) or power-law exponent (quantity_skew)."
    )
    shards_per_client: PositiveInt = 2
    min_size: int = Field(
        2, ge=1, le=1_000_000, description="Smallest number of samples any client may receive."
    )


class ModelConfig(Strict):
    """``name: null`` picks the dataset's natural model (linreg→linear, logreg→logreg, else mlp)."""

    name: ModelName | None = None
    hidden: list[PositiveInt] = Field(default_factory=lambda: [64])
    activation: Literal["relu", "selu"] = Field(
        "relu", description="mlp: relu, or selu (LeCun-normal init, self-normalising, no norm layers)."
    )
    norm: Literal["none", "batch", "group"] = Field(
        "none", description="mlp with relu: a normalisation layer before each ReLU (docs/building_blocks.md)."
    )
    groups: PositiveInt = Field(
        8, description="norm: group, the number of groups; it divides every hidden width."
    )
    alpha_dropout: float = Field(
        0.0, ge=0, lt=1, description="selu: alpha-dropout rate after each hidden layer."
    )


class TaskConfig(Strict):
    dataset: DatasetName = "digits"
    dataset_params: dict[str, Any] = Field(default_factory=dict)
    num_clients: PositiveInt = Field(10, le=MAX_POPULATION)
    partition: PartitionConfig = Field(default_factory=PartitionConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Held-out share of pooled datasets.")


class SpeedConfig(Strict):
    """Per-client compute speed: a virtual-time cost per minibatch gradient.

    A client's speed s_i is drawn once (log-normal with ``sigma``); a ``slow_fraction`` of
    clients is additionally slowed by ``slow_factor``. Each unit of work then takes
    ``step_time / s_i`` (``deterministic``) or an Exp draw with that mean (``exponential``),
    i.e. a Poisson compute clock. A unit is one gradient on a minibatch (a plain SGD step is
    one unit, a SAM-type step two, a gradient on a batch B larger than the minibatch b takes
    ⌈|B|/b⌉), see ``ClientContext.work``.
    """

    step_time: float = Field(0.01, gt=0)
    sigma: float = Field(0.0, ge=0)
    slow_fraction: float = Field(0.0, ge=0, le=1)
    slow_factor: float = Field(10.0, ge=1)
    jitter: Literal["deterministic", "exponential"] = "deterministic"


class LinkConfig(Strict):
    """Link latency = base + bytes / bandwidth, with a per-client log-normal bandwidth."""

    base: float = Field(0.05, ge=0)
    bandwidth: float = Field(1e7, gt=0, description="Bytes per virtual second.")
    sigma: float = Field(0.0, ge=0)


class SystemConfig(Strict):
    compute: SpeedConfig = Field(default_factory=SpeedConfig)
    link: LinkConfig = Field(default_factory=LinkConfig)


class EvalConfig(Strict):
    every: PositiveInt = 1
    train_loss: bool = True
    per_node: bool = Field(True, description="Decentralized runs: also evaluate every node's own model.")
    every_time: float | None = Field(None, gt=0, description="Event-driven runs: evaluate on this time grid.")


class BackendConfig(Strict):
    kind: Literal["local", "ray"] = "local"
    address: str | None = None
    num_actors: PositiveInt | None = None
    cpus_per_actor: float = Field(1.0, gt=0)
    torch_threads: PositiveInt = 1
    timeout_s: float = Field(300.0, gt=0, description="Upper bound on any single remote wait.")
    startup_timeout_s: float = Field(
        600.0, gt=0, description="Upper bound on starting and configuring the actors of a run."
    )
    connect_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="Upper bound on reaching and joining the Ray cluster at address."
    )
    max_recoveries: int = Field(3, ge=0, description="Lost workers tolerated before the run fails.")
    state_memory_mb: float | None = Field(
        None,
        ge=0,
        description="Per-host budget for persistent client state kept in memory; the least recently "
        "used states beyond it spill to disk. null keeps every state in memory.",
    )
    state_dir: str | None = Field(
        None, description="Parent directory for spilled client state (default: the system temp dir)."
    )
    client_cache_mb: float | None = Field(
        None,
        gt=0,
        description="Per-host bound on the data of lazily built clients (large synthetic populations); "
        "least recently used clients are dropped and rebuilt bit-identically. null: 64 MB.",
    )
    client_cache_clients: PositiveInt | None = Field(
        None, description="Per-host bound on the number of lazily built clients kept in memory."
    )
    vectorize: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Run a round's clients on one host as one batched computation (docs/vectorized.md): "
        "auto where the algorithm has a batched update and the round is large enough, on (an error "
        "where it has none), off (one client after another).",
    )
    event_parallelism: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Ray, event-driven runs: spread the nodes over backend.num_actors actors (on), keep "
        "the whole run on one coordinator actor (off), or choose from the measured cost of an event "
        "against an actor round trip (auto).",
    )

    @field_validator("vectorize", "event_parallelism", mode="before")
    @classmethod
    def _yaml_switch(cls, value: Any) -> Any:
        """YAML 1.1 reads a bare ``on``/``off`` (in a file or an ``-o`` override) as a boolean."""
        if isinstance(value, bool):
            return "on" if value else "off"
        return value


class BudgetConfig(Strict):
    """When an event-driven run stops: virtual time, gradient events or communications."""

    time: float | None = Field(None, gt=0)
    gradients: PositiveInt | None = None
    communications: PositiveInt | None = None


class WallConfig(Strict):
    """``time: wall``: how fast virtual time runs in real seconds, and a common start delay."""

    seconds_per_unit: float = Field(0.05, gt=0)
    start_delay_s: float = Field(2.0, ge=0, description="Lets every actor start its clocks at once.")
    min_realised_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Fail the run when fewer of the scheduled events happen in time (warn below 0.9).",
    )


class OutputConfig(Strict):
    dir: str = Field("results", min_length=1, max_length=1024)


class CheckpointConfig(Strict):
    every: int = Field(0, ge=0, description="Rounds between checkpoints; 0 disables them.")


class Scenario(Strict):
    """A whole scenario. ``algorithm`` stays a raw mapping here; see ``resolve_algorithm``."""

    name: str = Field("scenario", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")
    seed: int = Field(0, ge=0, le=MAX_SEED)
    kind: Literal["federated", "study"] = "federated"
    task: TaskConfig = Field(default_factory=TaskConfig)
    algorithm: dict[str, Any] = Field(default_factory=lambda: {"name": "fedavg"})
    rounds: PositiveInt = Field(10, le=MAX_ROUNDS)
    clients_per_round: PositiveInt | None = None
    participation: float | None = Field(None, gt=0, le=1)
    sampling: SamplingConfig = Field(
        default_factory=SamplingConfig,
        description="fixed | bernoulli, or a mapping {kind: temperature | dpp, ...} "
        "(docs/building_blocks.md).",
    )
    system: SystemConfig = Field(default_factory=SystemConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    backend: BackendConfig = Field(default_factory=BackendConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    #: Parsed by the compression part's model (``CompressionConfig``), see flsim.config.sections.
    compression: Annotated[Any, OwnedSection("compression")] = Field(
        default_factory=dict, validate_default=True
    )
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    #: Parsed by the topology part's model (``TopologyConfig``); ``None``: no graph.
    topology: Annotated[Any, OwnedSection("topology", optional=True)] = None
    time: Literal["virtual", "wall"] = "virtual"
    wall: WallConfig = Field(default_factory=WallConfig)
    study: dict[str, Any] = Field(default_factory=dict)
    tags: list[Tag] = Field(
        default_factory=list,
        max_length=32,
        description="Labels carried into summary.json, reports and the dashboard.",
    )
    notes: str = Field("", max_length=2000, description="Free text carried into summary.json and the report.")
    plugins: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="Modules imported before validation; each registers algorithms (trusted code).",
    )

    @field_validator("algorithm", "study")
    @classmethod
    def _section_name_is_text(cls, section: dict[str, Any]) -> dict[str, Any]:
        # The registries look the name up; a list or a mapping there is a typo, not a name.
        if "name" in section and not isinstance(section["name"], str):
            raise ValueError(f"name must be a string, not {type(section['name']).__name__}")
        return section

    @field_validator("sampling", mode="before")
    @classmethod
    def _sampling_word(cls, value: Any) -> Any:
        return as_sampling(value)

    @field_validator("name")
    @classmethod
    def _name_is_one_folder(cls, name: str) -> str:
        # The name is a folder under output.dir: "." and ".." would write beside or above it.
        if set(name) == {"."}:
            raise ValueError("must name a folder, not '.' or '..'")
        return name

    @model_validator(mode="after")
    def _bernoulli_can_sample(self) -> Scenario:
        if self.sampling.kind != "bernoulli" or self.participation is None:
            return self
        empty = (1.0 - self.participation) ** self.task.num_clients
        if empty > 1.0 - 1.0 / MAX_MEAN_DRAWS:
            raise ValueError(
                f"participation={self.participation:g} of {self.task.num_clients} clients leaves "
                f"every client out of a round with probability {empty:.3g}; bernoulli sampling "
                f"would redraw more than {MAX_MEAN_DRAWS} times per round on average"
            )
        return self

    @model_validator(mode="after")
    def _participation_is_exclusive(self) -> Scenario:
        if self.clients_per_round is not None and self.participation is not None:
            raise ValueError("give either clients_per_round or participation, not both")
        if self.clients_per_round is not None and self.clients_per_round > self.task.num_clients:
            raise ValueError(
                f"clients_per_round={self.clients_per_round} exceeds task.num_clients={self.task.num_clients}"
            )
        return self

    @model_validator(mode="after")
    def _wall_clock_needs_ray(self) -> Scenario:
        if self.time == "wall":
            if self.backend.kind != "ray":
                raise ValueError("time: wall runs on Ray only (set backend.kind: ray)")
            if self.budget.time is None:
                raise ValueError("time: wall needs budget.time (virtual time units to run)")
        return self

    def expected_participants(self) -> int:
        """Clients per round under fixed sampling (the mean under Bernoulli sampling)."""
        n = self.task.num_clients
        if self.clients_per_round is not None:
            return self.clients_per_round
        if self.participation is not None:
            return max(1, round(self.participation * n))
        return n
