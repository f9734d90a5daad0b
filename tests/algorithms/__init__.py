"""Tests of the centralized FL algorithms (docs/algorithms.md B, F, M)."""

#: The algorithms these tests cover (the registry also holds other families').
CENTRALIZED = ["fedamd", "fedavg", "fedbuff", "feddyn", "fedprox", "fedsam", "fedspeed", "scaffold"]
