"""The study registry: what a study declares about itself, and how studies are found.

A study's declaration (:class:`StudySpec`) carries everything the harness needs without
running it: the typed parameter model (so ``flsim validate`` checks ``study.*`` keys before
anything is written), the paper and claim shown by ``flsim studies list``, and the figures
the report and dashboard draw from its metric rows.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from flsim.config.errors import ConfigError, errors_from_validation
from flsim.config.sections import register_check

if TYPE_CHECKING:
    from flsim.studies.context import StudyContext
    from flsim.studies.outcome import StudyOutcome

#: Modules of this package that hold the harness rather than a study.
HARNESS_MODULES = frozenset({"spec", "outcome", "context", "runner"})


class StudyParams(BaseModel):
    """Base of every study's parameter model: unknown keys and non-finite floats are errors.

    ``seeds`` is the list of seeds a study aggregates over when its claim is a median over
    seeds; studies that do not aggregate ignore it. A study names its own defaults, taken
    from the setup its paper's claim is stated for (scaled to CPU toy size where needed).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


@dataclass(frozen=True)
class FigureSpec:
    """One plot of a study's metric rows: ``y`` columns against ``x``, optionally per ``series``.

    Rows lacking ``x`` or a ``y`` column are skipped, so one study can record rows for
    several figures with different x-axes (tag them with a ``series`` or ``figure`` column).
    """

    title: str
    x: str
    y: tuple[str, ...]
    series: str | None = None
    log_x: bool = False
    log_y: bool = False
    where: dict[str, Any] = field(default_factory=dict)  # keep rows whose columns equal these

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, written to ``summary.json`` so a run directory draws its own figures."""
        return {
            "title": self.title,
            "x": self.x,
            "y": list(self.y),
            "series": self.series,
            "log_x": self.log_x,
            "log_y": self.log_y,
            "where": dict(self.where),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FigureSpec:
        """The inverse of :meth:`as_dict` (unknown keys are ignored, for older or newer runs)."""
        return cls(
            title=str(data.get("title", "")),
            x=str(data["x"]),
            y=tuple(str(c) for c in data.get("y", ())),
            series=data.get("series"),
            log_x=bool(data.get("log_x", False)),
            log_y=bool(data.get("log_y", False)),
            where=dict(data.get("where") or {}),
        )


StudyFunction = Callable[[Any, "StudyContext"], "StudyOutcome"]


@dataclass(frozen=True)
class StudySpec:
    """A registered study: its name, parameter model, provenance, claim, figures and code."""

    name: str
    params: type[StudyParams]
    paper: str
    claim: str
    run: StudyFunction
    figures: tuple[FigureSpec, ...] = ()
    number: int | None = None  # its number in the project's list of 21 studies


STUDIES: dict[str, StudySpec] = {}


def register_study(
    name: str,
    *,
    params: type[StudyParams],
    paper: str,
    claim: str,
    figures: tuple[FigureSpec, ...] = (),
    number: int | None = None,
) -> Callable[[StudyFunction], StudyFunction]:
    """Register ``function(params, context) -> StudyOutcome`` as the study ``name``."""

    def decorate(function: StudyFunction) -> StudyFunction:
        if name in STUDIES:
            raise ValueError(f"study {name!r} registered twice")
        STUDIES[name] = StudySpec(name, params, paper, claim, function, tuple(figures), number)
        return function

    return decorate


def load_builtin_studies() -> dict[str, StudySpec]:
    """Import every study module of this package once (registration is their side effect)."""
    import flsim.studies as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name.startswith("_") or module.name in HARNESS_MODULES:
            continue
        importlib.import_module(f"flsim.studies.{module.name}")
    return STUDIES


def check_study(scenario: Any) -> None:
    """The scenario's study exists and its ``study.*`` parameters fit the study's own model.

    Registered as the ``study`` check of :mod:`flsim.config.sections`, so ``flsim validate``
    finds a bad parameter before anything runs, like an algorithm's hyperparameter.
    """
    studies = load_builtin_studies()
    name = scenario.study.get("name")
    if name not in studies:
        raise ConfigError("study.name", name, f"unknown study; choose from {sorted(studies)}")
    parameters = {key: value for key, value in scenario.study.items() if key != "name"}
    try:
        studies[name].params.model_validate(parameters)
    except ValidationError as exc:
        raise errors_from_validation(exc, prefix="study") from None


register_check("study", check_study, kinds=("study",))
