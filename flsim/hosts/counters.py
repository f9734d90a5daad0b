"""Cumulative accounting of a run, shared by every driver and carried through checkpoints."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Counters:
    """Cumulative accounting carried across rounds and through checkpoints."""

    round: int = 0
    virtual_time: float = 0.0
    events: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    grad_evals: int = 0
    wall_time: float = 0.0
