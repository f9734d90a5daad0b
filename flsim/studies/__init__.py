"""Single-node studies (STUDIES.md): non-federated methods run in the same harness.

A study is a registered function ``(scenario, recorder) -> summary``. It records metric rows
like any run (``recorder.append_metrics``) and returns the numbers behind its claim plus a
``pass`` flag, which goes into ``summary.json``. Scenarios select one with ``kind: study``
and ``study: {name: ..., <parameters>}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class Recorder(Protocol):
    def append_metrics(self, row: dict[str, Any]) -> None: ...


Study = Callable[[Any, Recorder], dict[str, Any]]
STUDIES: dict[str, Study] = {}


def register_study(name: str) -> Callable[[Study], Study]:
    def decorate(function: Study) -> Study:
        if name in STUDIES:
            raise ValueError(f"study {name!r} registered twice")
        STUDIES[name] = function
        return function

    return decorate


def load_builtin_studies() -> dict[str, Study]:
    from flsim.studies import last_iterate_sgd  # noqa: F401  (registration side effect)

    return STUDIES
