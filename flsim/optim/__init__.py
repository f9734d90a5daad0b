"""Optimizers written for flsim: usable as single-node study optimizers and as client optimizers.

Each is a ``torch.optim.Optimizer`` whose whole state lives in ``state_dict()`` and that draws
no random numbers, so a client's local training stays a deterministic function of its inputs.
"""

from __future__ import annotations

from flsim.optim.adamp import SGDP, AdamP, project_if_scale_invariant
from flsim.optim.muon import DropMuon, Muon, newton_schulz5

__all__ = ["SGDP", "AdamP", "DropMuon", "Muon", "newton_schulz5", "project_if_scale_invariant"]
