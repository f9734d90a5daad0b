"""Partitioners: split a pooled dataset's training indices among clients.

Every partitioner has the signature
``partition(labels, num_clients, cfg, rng) -> list[np.ndarray]`` and guarantees that

- every sample index is assigned to exactly one client;
- every client receives at least ``cfg.min_size`` samples (otherwise a :class:`ConfigError`
  names the setting to change);
- indices are sorted within each client, so a client's data does not depend on the order
  in which the partitioner happened to collect them;
- all randomness comes from ``rng`` (derived from ``(seed, "partition")`` by the caller).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from flsim.config.errors import ConfigError
from flsim.config.schema import PartitionConfig

Partitioner = Callable[[np.ndarray, int, PartitionConfig, np.random.Generator], list[np.ndarray]]

#: Dirichlet draws tried before giving up on the ``min_size`` constraint.
MAX_DIRICHLET_DRAWS = 200


def _check_feasible(labels: np.ndarray, num_clients: int, cfg: PartitionConfig) -> int:
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if num_clients < 1:
        raise ConfigError("task.num_clients", num_clients, "must be >= 1")
    n = int(labels.shape[0])
    if n < num_clients * cfg.min_size:
        raise ConfigError(
            "task.num_clients",
            num_clients,
            f"{n} training samples cannot give {num_clients} clients at least "
            f"partition.min_size={cfg.min_size} samples each",
        )
    return n


def _finish(parts: list[np.ndarray], cfg: PartitionConfig, key: str, value: object) -> list[np.ndarray]:
    out = [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    smallest = min(len(p) for p in out)
    if smallest < cfg.min_size:
        raise ConfigError(
            key,
            value,
            f"a client received {smallest} samples, fewer than partition.min_size={cfg.min_size}",
        )
    return out


def iid(
    labels: np.ndarray, num_clients: int, cfg: PartitionConfig, rng: np.random.Generator
) -> list[np.ndarray]:
    """A uniformly random split into near-equal parts (sizes differ by at most one)."""
    n = _check_feasible(labels, num_clients, cfg)
    perm = rng.permutation(n)
    return _finish(list(np.array_split(perm, num_clients)), cfg, "task.num_clients", num_clients)


def dirichlet(
    labels: np.ndarray, num_clients: int, cfg: PartitionConfig, rng: np.random.Generator
) -> list[np.ndarray]:
    """Label skew: each class is spread over clients with proportions ~ Dirichlet(α·1).

    Small α concentrates each class on few clients (strong skew); large α approaches iid.
    A draw that leaves some client with fewer than ``min_size`` samples is redrawn, at most
    :data:`MAX_DIRICHLET_DRAWS` times, because rejecting is the standard (Hsu et al. 2019;
    NIID-Bench) way to keep every client usable without distorting the skew of the others.
    A draw assigns every sample an owner with array operations (O(n), not O(N × classes)
    Python steps), which makes a redraw over 10⁴ clients cheap.
    """
    n = _check_feasible(labels, num_clients, cfg)
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    alpha = np.full(num_clients, cfg.alpha)
    owner = np.empty(n, dtype=np.int64)
    smallest = 0
    for _ in range(MAX_DIRICHLET_DRAWS):
        for members in by_class:
            shuffled = rng.permutation(members)
            proportions = rng.dirichlet(alpha)
            cuts = np.minimum((np.cumsum(proportions)[:-1] * len(shuffled)).astype(np.int64), len(shuffled))
            # Client k takes shuffled[cuts[k-1]:cuts[k]]: position p goes to #{cuts <= p}.
            owner[shuffled] = np.searchsorted(cuts, np.arange(len(shuffled)), side="right")
        sizes = np.bincount(owner, minlength=num_clients)
        smallest = int(sizes.min())
        if smallest >= cfg.min_size:
            parts = np.split(np.argsort(owner, kind="stable"), np.cumsum(sizes)[:-1])
            return _finish(parts, cfg, "task.partition.alpha", cfg.alpha)
    raise ConfigError(
        "task.partition.alpha",
        cfg.alpha,
        f"no Dirichlet draw in {MAX_DIRICHLET_DRAWS} gave all {num_clients} clients at least "
        f"partition.min_size={cfg.min_size} samples (last draw's smallest client: {smallest}); "
        "raise alpha, lower partition.min_size or use fewer clients",
    )


def shards(
    labels: np.ndarray, num_clients: int, cfg: PartitionConfig, rng: np.random.Generator
) -> list[np.ndarray]:
    """Pathological non-iid split of McMahan et al. (2017): sort by label, deal out shards.

    The samples are sorted by label (ties in random order), cut into
    ``num_clients * shards_per_client`` contiguous shards of near-equal size, and each client
    receives ``shards_per_client`` shards chosen at random, so it sees only a few classes.
    """
    n = _check_feasible(labels, num_clients, cfg)
    total = num_clients * cfg.shards_per_client
    if total > n:
        raise ConfigError(
            "task.partition.shards_per_client",
            cfg.shards_per_client,
            f"{num_clients} clients x {cfg.shards_per_client} shards exceed the {n} training samples",
        )
    perm = rng.permutation(n)
    order = perm[np.argsort(labels[perm], kind="stable")]
    pieces = np.array_split(order, total)
    assignment = rng.permutation(total)
    parts = [
        np.concatenate(
            [pieces[s] for s in assignment[k * cfg.shards_per_client : (k + 1) * cfg.shards_per_client]]
        )
        for k in range(num_clients)
    ]
    return _finish(parts, cfg, "task.partition.shards_per_client", cfg.shards_per_client)


def quantity_skew(
    labels: np.ndarray, num_clients: int, cfg: PartitionConfig, rng: np.random.Generator
) -> list[np.ndarray]:
    """Size skew with iid labels: client sizes follow a power law with exponent α.

    The clients get random ranks r = 1..N and weight r^(-α); after every client receives
    ``min_size`` samples, the rest is shared in proportion to the weights (largest-remainder
    rounding, so sizes add up exactly). α → 0 gives equal sizes; *larger* α gives more skew
    (note: the opposite direction from ``dirichlet``, where small α means more skew).
    """
    n = _check_feasible(labels, num_clients, cfg)
    ranks = rng.permutation(num_clients) + 1
    # Python's float power (libm) rather than a vectorised one, for the same bits on any CPU.
    weights = np.array([float(r) ** (-cfg.alpha) for r in ranks])
    weights /= weights.sum()
    extra = n - num_clients * cfg.min_size
    share = weights * extra
    base = np.floor(share).astype(np.int64)
    leftover = extra - int(base.sum())
    bonus = np.zeros(num_clients, dtype=np.int64)
    bonus[np.argsort(-(share - base), kind="stable")[:leftover]] = 1
    sizes = cfg.min_size + base + bonus
    perm = rng.permutation(n)
    parts = np.split(perm, np.cumsum(sizes)[:-1])
    return _finish(list(parts), cfg, "task.partition.alpha", cfg.alpha)


PARTITIONERS: dict[str, Partitioner] = {
    "iid": iid,
    "dirichlet": dirichlet,
    "shards": shards,
    "quantity_skew": quantity_skew,
}


def partition(
    labels: np.ndarray, num_clients: int, cfg: PartitionConfig, rng: np.random.Generator
) -> list[np.ndarray]:
    """Dispatch on ``cfg.kind``."""
    try:
        partitioner = PARTITIONERS[cfg.kind]
    except KeyError:
        raise ConfigError(
            "task.partition.kind", cfg.kind, f"unknown partitioner (known: {', '.join(sorted(PARTITIONERS))})"
        ) from None
    return partitioner(labels, num_clients, cfg, rng)
