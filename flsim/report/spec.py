"""Declarative dashboard specs (``dashboards/*.yaml``), validated before anything is read.

A spec says which comparison a figure should make (metric against x, log axes), how runs are
grouped (by algorithm or by any dotted config key), how seeds are aggregated (median with an
interquartile or min–max band) and which tables to add (final metrics, rounds/bytes/virtual
time to reach a target). Keeping that in a file rather than in code means a comparison can
be reviewed, versioned and re-run on new results without touching Python.

Every mistake is a :class:`~flsim.config.errors.ConfigError` naming the offending dotted key
(``panels.1.metric``), so ``flsim report --spec`` exits with code 2 and says what to fix.
Metric names are checked against :data:`KNOWN_METRICS` (plus the spec's own
``extra_metrics``) and group keys against the scenario schema, because a typo there would
otherwise silently produce an empty panel or a single group.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flsim.config.errors import ConfigError, ConfigErrors
from flsim.config.yamlsafe import load_file


@dataclass(frozen=True)
class MetricInfo:
    """How a metric is displayed: its title, whether it is best drawn on a log axis and
    whether larger is better (for a target: reached when the value rises above it)."""

    title: str
    log_y: bool = False
    higher_is_better: bool = False


#: Metrics the engine and the shipped algorithms write; a spec may add more via ``extra_metrics``.
KNOWN_METRICS: dict[str, MetricInfo] = {
    "round": MetricInfo("round"),
    "virtual_time": MetricInfo("virtual time"),
    "wall_time": MetricInfo("wall time (s)"),
    "events": MetricInfo("events"),
    "communications": MetricInfo("communications (messages)"),
    "bytes_up": MetricInfo("bytes up"),
    "bytes_down": MetricInfo("bytes down"),
    "bytes_total": MetricInfo("total bytes (up + down)"),
    "grad_evals": MetricInfo("gradient evaluations"),
    "train_loss": MetricInfo("train loss"),
    "test_loss": MetricInfo("test loss"),
    "test_acc": MetricInfo("test accuracy", higher_is_better=True),
    "optimality_gap": MetricInfo("optimality gap f(x) − f*", log_y=True),
    "dist_to_opt": MetricInfo("distance to optimum ‖x − x*‖²", log_y=True),
    "consensus_distance": MetricInfo("consensus distance", log_y=True),
    "node_test_acc_mean": MetricInfo("mean node test accuracy", higher_is_better=True),
    "node_test_acc_min": MetricInfo("worst node test accuracy", higher_is_better=True),
    "staleness": MetricInfo("mean staleness"),
    "staleness_max": MetricInfo("max staleness"),
    "error_norm": MetricInfo("error-feedback norm", log_y=True),
    "anchor_fraction": MetricInfo("anchor fraction"),
    "mean_sq_dist_to_opt": MetricInfo("mean node ‖x_i − x*‖²", log_y=True),
    "averaged_sq_dist_to_opt": MetricInfo("time-averaged ‖x̄_i − x*‖²", log_y=True),
    "gradient_events": MetricInfo("gradient events"),
    "communication_events": MetricInfo("communication events"),
}

#: The x axes a panel may use. ``communications`` is ``events`` unless a run records it.
XAxis = Literal["round", "virtual_time", "bytes_total", "grad_evals", "communications", "wall_time"]
X_AXIS_NAMES: tuple[str, ...] = typing.get_args(XAxis)

#: Group keys that are run identity rather than config paths.
IDENTITY_KEYS: dict[str, str] = {
    "algorithm": "algorithm",
    "scenario": "scenario",
    "status": "status",
    "seed": "seed",
    "name": "scenario",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PanelSpec(_Strict):
    """One figure: ``metric`` against one or several x axes (one subplot each)."""

    metric: str
    x: XAxis | list[XAxis] = "round"
    title: str | None = None
    log_x: bool = False
    log_y: bool | None = Field(None, description="null: the metric's default (log for gaps and distances)")
    show_runs: bool = Field(False, description="also draw each run as a thin line under the aggregate")

    @property
    def x_axes(self) -> list[str]:
        return [self.x] if isinstance(self.x, str) else list(self.x)

    @field_validator("x")
    @classmethod
    def _non_empty(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("give at least one x axis")
        return value


class AggregateSpec(_Strict):
    """How the runs of one group (typically its seeds) become one curve and a band."""

    center: Literal["median", "mean"] = "median"
    band: Literal["iqr", "minmax", "none"] = "iqr"


class FinalTableSpec(_Strict):
    """Per group: the centre and band of each metric's last value over the group's runs."""

    kind: Literal["final"]
    title: str | None = None
    metrics: list[str] = Field(min_length=1)


class TargetTableSpec(_Strict):
    """Per group: rounds / bytes / virtual time until ``metric`` first reaches ``target``."""

    kind: Literal["time_to_target"]
    title: str | None = None
    metric: str
    target: float
    direction: Literal["above", "below"] | None = Field(
        None, description="null: 'above' for accuracies, 'below' for losses and gaps"
    )
    measures: list[XAxis] = Field(
        default_factory=lambda: ["round", "bytes_total", "virtual_time"], min_length=1
    )


TableSpec = Annotated[Union[FinalTableSpec, TargetTableSpec], Field(discriminator="kind")]  # noqa: UP007


class FilterSpec(_Strict):
    """Keep only matching runs; every given field must match (values are OR-ed per field)."""

    scenario: list[str] | None = None
    algorithm: list[str] | None = None
    status: list[str] | None = None
    config: dict[str, list[Any]] = Field(
        default_factory=dict, description="dotted config key → allowed values"
    )


class DashboardSpec(_Strict):
    """A whole dashboard: title, grouping, aggregation, filter, panels and tables."""

    title: str = "flsim report"
    description: str = ""
    group_by: str | list[str] = "algorithm"
    aggregate: AggregateSpec = Field(default_factory=AggregateSpec)
    filter: FilterSpec = Field(default_factory=FilterSpec)
    extra_metrics: list[str] = Field(default_factory=list)
    panels: list[PanelSpec] = Field(min_length=1)
    tables: list[TableSpec] = Field(default_factory=list)

    @property
    def group_keys(self) -> list[str]:
        return [self.group_by] if isinstance(self.group_by, str) else list(self.group_by)

    def metric_info(self, name: str) -> MetricInfo:
        return KNOWN_METRICS.get(name, MetricInfo(name))

    def panel_log_y(self, panel: PanelSpec) -> bool:
        return self.metric_info(panel.metric).log_y if panel.log_y is None else panel.log_y

    def target_direction(self, table: TargetTableSpec) -> str:
        if table.direction is not None:
            return table.direction
        return "above" if self.metric_info(table.metric).higher_is_better else "below"


# -- validation ----------------------------------------------------------------------------------
_TABLE_TAGS = {"final", "time_to_target"}
_TYPE_NAMES = {"str", "int", "float", "bool", "list", "dict", "none"}


def _clean_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """pydantic's error location without union-branch segments (``literal[...]``, ``str``, tags)."""
    parts: list[int | str] = []
    for i, part in enumerate(loc):
        if isinstance(part, str):
            if any(c in part for c in "[](),'") or part in _TYPE_NAMES:
                continue
            if part in _TABLE_TAGS and i >= 2 and loc[i - 2] == "tables":
                continue
        parts.append(part)
    return tuple(parts)


def _dotted(loc: tuple[int | str, ...]) -> str:
    """A cleaned error location as flsim's dotted key (``panels.0.metric``)."""
    return ".".join(str(p) for p in loc)


def _lookup(data: Any, loc: tuple[int | str, ...]) -> Any:
    for part in loc:
        in_dict = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and part < len(data)
        if in_dict or in_list:
            data = data[part]
        else:
            return None
    return data


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_metric(key: str, name: str, known: list[str]) -> ConfigError:
    return ConfigError(
        key,
        name,
        f"unknown metric{_suggest(name, known)}; known: {', '.join(sorted(known))} "
        "(declare others under extra_metrics)",
    )


def _model_class(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``annotation`` (unwrapping ``X | None``), if there is one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_class(arg)
            if found is not None:
                return found
    return None


def config_key_error(dotted: str) -> str | None:
    """Why ``dotted`` is not a scenario config key, or ``None`` when it is one.

    Walks the scenario schema's pydantic models; below a free-form mapping (the algorithm's
    hyperparameters, ``dataset_params``) any key is accepted, because those are validated per
    algorithm or dataset and the report cannot know them all. ``versions.*`` (written into
    every resolved config) is accepted too.
    """
    from flsim.config.schema import Scenario

    parts = dotted.split(".")
    if parts[0] == "versions":
        return None
    model: type[BaseModel] | None = Scenario
    for depth, part in enumerate(parts):
        if model is None:
            return None  # below a free-form mapping
        fields = model.model_fields
        if part not in fields:
            where = ".".join(parts[:depth]) or "the scenario"
            return f"unknown config key {part!r} under {where}{_suggest(part, list(fields))}"
        annotation = fields[part].annotation
        model = _model_class(annotation)
        if model is None and depth < len(parts) - 1:
            origin = typing.get_origin(annotation)
            if annotation is Any or origin is dict or annotation is dict:
                return None
            return f"{'.'.join(parts[: depth + 1])} is a value, it has no key {parts[depth + 1]!r}"
    return None


def _semantic_errors(spec: DashboardSpec) -> list[ConfigError]:
    known = sorted(set(KNOWN_METRICS) | set(spec.extra_metrics))
    errors: list[ConfigError] = []

    def check_metric(key: str, name: str) -> None:
        if name not in known:
            errors.append(_unknown_metric(key, name, known))

    for i, panel in enumerate(spec.panels):
        check_metric(f"panels.{i}.metric", panel.metric)
    for i, table in enumerate(spec.tables):
        if isinstance(table, FinalTableSpec):
            for j, name in enumerate(table.metrics):
                check_metric(f"tables.{i}.metrics.{j}", name)
        else:
            check_metric(f"tables.{i}.metric", table.metric)
    keys = spec.group_keys
    for i, key in enumerate(keys):
        where = "group_by" if isinstance(spec.group_by, str) else f"group_by.{i}"
        if key not in IDENTITY_KEYS:
            reason = config_key_error(key)
            if reason is not None:
                errors.append(ConfigError(where, key, reason))
    for key in spec.filter.config:
        reason = config_key_error(key)
        if reason is not None:
            errors.append(ConfigError(f"filter.config.{key}", key, reason))
    return errors


def parse_spec(data: Any, source: str = "spec") -> DashboardSpec:
    """Validate an already parsed spec mapping; ``source`` prefixes every error key."""
    if not isinstance(data, dict):
        raise ConfigError(source, type(data).__name__, "a dashboard spec must be a mapping")
    try:
        spec = DashboardSpec.model_validate(data)
    except ValidationError as exc:
        errors: dict[str, ConfigError] = {}
        for err in exc.errors():
            loc = _clean_loc(tuple(err["loc"]))
            key = f"{source}: {_dotted(loc)}" if loc else source
            value = _lookup(data, loc) if err["type"] != "missing" else None
            reason = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            errors.setdefault(key, ConfigError(key, value, reason))  # a union reports each branch
        found = list(errors.values())
        raise (found[0] if len(found) == 1 else ConfigErrors(found)) from None
    errors = [ConfigError(f"{source}: {e.key}", e.value, e.reason) for e in _semantic_errors(spec)]
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
    return spec


def load_spec(path: str | Path | DashboardSpec) -> DashboardSpec:
    """Read and validate a spec file (a :class:`DashboardSpec` passes through)."""
    if isinstance(path, DashboardSpec):
        return path
    path = Path(path)
    if not path.is_file():
        raise ConfigError("--spec", str(path), "cannot read the spec file (no such file)")
    # The bounded loader: a spec is user input like a scenario (size, aliases, UTF-8).
    return parse_spec(load_file(path, "--spec"), str(path))
