"""What a study returns: named pass criteria and the numbers behind them.

``summary.json`` carries ``pass`` (every criterion holds), ``criteria`` as
``{name: {value, threshold, pass, op}}`` and ``results``. A criterion is built by one of the
comparison helpers so that its verdict is computed here, never typed in by the study.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Criterion:
    """One pass criterion: ``value op threshold`` (``op`` is ``<=``, ``>=`` or ``in``)."""

    value: float
    threshold: float | tuple[float, float]
    op: str
    passed: bool
    gate: bool = True  # False: a reported claim that does not fail the study (loose analogues)

    def as_dict(self) -> dict[str, Any]:
        threshold = list(self.threshold) if isinstance(self.threshold, tuple) else self.threshold
        return {
            "value": self.value,
            "threshold": threshold,
            "op": self.op,
            "pass": self.passed,
            "gate": self.gate,
        }


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def at_most(value: float, threshold: float, *, gate: bool = True) -> Criterion:
    """Holds when ``value <= threshold``; a NaN or infinite value never passes."""
    value = float(value)
    return Criterion(value, float(threshold), "<=", _finite(value) and value <= threshold, gate)


def at_least(value: float, threshold: float, *, gate: bool = True) -> Criterion:
    """Holds when ``value >= threshold``; a NaN or infinite value never passes."""
    value = float(value)
    return Criterion(value, float(threshold), ">=", _finite(value) and value >= threshold, gate)


def between(value: float, low: float, high: float, *, gate: bool = True) -> Criterion:
    """Holds when ``low <= value <= high``."""
    value = float(value)
    passed = _finite(value) and low <= value <= high
    return Criterion(value, (float(low), float(high)), "in", passed, gate)


@dataclass
class StudyOutcome:
    """A study's verdict: criteria by name, and the results a reader or a check relies on."""

    criteria: dict[str, Criterion]
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when every gating criterion holds (claims with ``gate=False`` only report)."""
        return all(c.passed for c in self.criteria.values() if c.gate)

    def summary(self) -> dict[str, Any]:
        return {
            "pass": self.passed,
            "criteria": {name: c.as_dict() for name, c in self.criteria.items()},
            "results": self.results,
        }
