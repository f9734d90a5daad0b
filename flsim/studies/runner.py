"""Run one study of a validated scenario and turn its outcome into ``summary.json`` fields."""

from __future__ import annotations

from typing import Any

from flsim.studies.context import Recorder, StudyContext
from flsim.studies.spec import load_builtin_studies


def run_study(scenario: Any, recorder: Recorder) -> dict[str, Any]:
    """Parse ``study.*`` with the study's model, run it, return its ``summary.json`` fields.

    These are ``study`` (the name), ``pass``, ``criteria``, ``results`` and ``figures`` (the
    study's :class:`~flsim.studies.spec.FigureSpec` list as dicts, so that the report and the
    dashboard draw a run's figures from its directory alone).
    """
    spec = load_builtin_studies()[scenario.study["name"]]
    params = spec.params.model_validate({k: v for k, v in scenario.study.items() if k != "name"})
    outcome = spec.run(params, StudyContext(scenario.seed, recorder))
    if not outcome.criteria:
        raise ValueError(f"study {spec.name!r} returned no criteria; a study must be able to fail")
    figures = [figure.as_dict() for figure in spec.figures]
    return {"study": spec.name, **outcome.summary(), "figures": figures}
