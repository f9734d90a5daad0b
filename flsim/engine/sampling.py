"""Client sampling per round: fixed-size without replacement, or Bernoulli."""

from __future__ import annotations

from flsim.rng import numpy_rng


def sample_clients(
    seed: int, round_index: int, num_clients: int, kind: str, count: int, fraction: float
) -> list[int]:
    """The sorted ids of S_t, drawn from the ("sampling", round) stream.

    Bernoulli sampling includes each client independently with probability ``fraction`` and
    redraws when nobody is active (as the FedSpeed code does).
    """
    if count >= num_clients and kind == "fixed":
        return list(range(num_clients))
    attempt = 0
    while True:
        rng = numpy_rng(seed, "sampling", attempt, round_index)
        if kind == "fixed":
            chosen = rng.choice(num_clients, size=count, replace=False)
        else:
            chosen = (rng.random(num_clients) < fraction).nonzero()[0]
        if len(chosen):
            return sorted(int(c) for c in chosen)
        attempt += 1
