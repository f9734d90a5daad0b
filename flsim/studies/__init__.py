"""Single-node studies: non-federated research methods run in the same harness as FL runs.

A study is one module of this package that registers a function with :func:`register_study`.
It declares a typed parameter model (validated at load time like an algorithm's
hyperparameters), records metric rows through its :class:`StudyContext` like any run, and
returns a :class:`StudyOutcome`: named pass criteria and the numbers behind them. Scenarios
select a study with ``kind: study`` and ``study: {name: ..., <parameters>}``.

The harness lives in :mod:`flsim.studies.spec`, :mod:`flsim.studies.outcome` and
:mod:`flsim.studies.context`; every other module here is a study, found by
:func:`load_builtin_studies` without a hand-kept list.
"""

from __future__ import annotations

from flsim.studies.context import StudyContext
from flsim.studies.outcome import Criterion, StudyOutcome, at_least, at_most, between
from flsim.studies.spec import (
    STUDIES,
    FigureSpec,
    StudyParams,
    StudySpec,
    load_builtin_studies,
    register_study,
)

__all__ = [
    "STUDIES",
    "Criterion",
    "FigureSpec",
    "StudyContext",
    "StudyOutcome",
    "StudyParams",
    "StudySpec",
    "at_least",
    "at_most",
    "between",
    "load_builtin_studies",
    "register_study",
]
