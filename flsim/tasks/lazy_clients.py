"""Clients whose data is built on first use and kept in a bounded cache (issue 17).

A cross-device population (10⁵–10⁶ phones) touches only K clients a round, so holding every
client's data would make memory O(N) for no benefit. :class:`LazyClients` is a read-only
sequence of :class:`Shard` whose element ``i`` is a pure function of (seed, i): it is built
when first indexed and kept in a least-recently-used cache bounded in bytes and/or in clients.
Because a rebuilt shard is bit-identical to the evicted one, results never depend on the
cache size; only time and memory do.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, overload

from flsim.tasks.base import Shard

if TYPE_CHECKING:
    from flsim.config.schema import BackendConfig
    from flsim.tasks.base import Task

#: Cache bound when the scenario sets none: thousands of small clients, a fixed memory cost.
DEFAULT_CACHE_BYTES = 64 * 2**20


def shard_bytes(shard: Shard) -> int:
    return shard.x.element_size() * shard.x.numel() + shard.y.element_size() * shard.y.numel()


class LazyClients(Sequence[Shard]):
    """``clients[i]`` built by ``build(i)`` on demand; an LRU cache keeps the recent ones.

    ``sizes`` gives every client's sample count without building anything (algorithms weight
    by n_i before any client has run).
    """

    def __init__(
        self,
        count: int,
        build: Callable[[int], Shard],
        sizes: Callable[[], list[int]],
        max_bytes: int | None = DEFAULT_CACHE_BYTES,
        max_clients: int | None = None,
        build_many: Callable[[list[int]], list[Shard]] | None = None,
    ) -> None:
        self._count = count
        self._build = build
        self._build_many = build_many
        self._sizes = sizes
        self._cache: OrderedDict[int, Shard] = OrderedDict()
        self._bytes = 0
        self.builds = 0
        self.max_bytes = max_bytes
        self.max_clients = max_clients

    def configure(self, max_bytes: int | None = None, max_clients: int | None = None) -> None:
        """Set the bounds (``None`` leaves a bound unlimited) and evict down to them."""
        self.max_bytes = max_bytes
        self.max_clients = max_clients
        self._evict()

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> Shard: ...

    @overload
    def __getitem__(self, index: slice) -> list[Shard]: ...

    def __getitem__(self, index: int | slice) -> Shard | list[Shard]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._count))]
        i = int(index)
        if i < 0:
            i += self._count
        if not 0 <= i < self._count:
            raise IndexError(f"client {index} out of range for {self._count} clients")
        shard = self._cache.get(i)
        if shard is not None:
            self._cache.move_to_end(i)
            return shard
        shard = self._build(i)
        self._keep(i, shard)
        return shard

    def prefetch(self, ids: Iterable[int]) -> None:
        """Build the uncached clients among ``ids`` in one block pass, if the population has
        one (``build_many``): a round's K first-time clients then cost one vectorised draw
        instead of K separate streams. The shards are the ones ``build`` gives (tested), so
        prefetching changes time, never results. At most the cache's client bound is built."""
        if self._build_many is None:
            return
        missing = [i for i in dict.fromkeys(int(i) for i in ids) if i not in self._cache]
        if self.max_clients is not None:
            missing = missing[: self.max_clients]
        if missing:
            for i, shard in zip(missing, self._build_many(missing), strict=True):
                self._keep(i, shard)

    def _keep(self, i: int, shard: Shard) -> None:
        self.builds += 1
        self._cache[i] = shard
        self._bytes += shard_bytes(shard)
        self._evict()

    def __iter__(self) -> Iterator[Shard]:
        """Every client in id order, *without* caching (a full pass must not flush the cache)."""
        for i in range(self._count):
            yield self._cache[i] if i in self._cache else self._build(i)

    def _evict(self) -> None:
        """Drop least recently used shards until within bounds; the newest one always stays."""
        while len(self._cache) > 1 and (
            (self.max_clients is not None and len(self._cache) > self.max_clients)
            or (self.max_bytes is not None and self._bytes > self.max_bytes)
        ):
            _, old = self._cache.popitem(last=False)
            self._bytes -= shard_bytes(old)

    @property
    def cached_clients(self) -> int:
        return len(self._cache)

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    def sizes(self) -> list[int]:
        return self._sizes()


def prefetch_clients(task: Task, ids: Iterable[int]) -> None:
    """Build a round's uncached clients together where the population is lazy (a no-op for
    a list of shards)."""
    if isinstance(task.clients, LazyClients):
        task.clients.prefetch(ids)


class LazyConstants(Sequence[float]):
    """A per-client constant (L_i, μ_i) computed from the client's data when first read."""

    def __init__(self, count: int, compute: Callable[[int], float]) -> None:
        self._count = count
        self._compute = compute
        self._values: dict[int, float] = {}

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> float: ...

    @overload
    def __getitem__(self, index: slice) -> list[float]: ...

    def __getitem__(self, index: int | slice) -> float | list[float]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._count))]
        i = int(index) + (self._count if int(index) < 0 else 0)
        if not 0 <= i < self._count:
            raise IndexError(f"client {index} out of range for {self._count} clients")
        if i not in self._values:
            self._values[i] = self._compute(i)
        return self._values[i]


def configure_client_cache(task: Task, backend: BackendConfig) -> None:
    """Apply ``backend.client_cache_mb`` / ``backend.client_cache_clients`` to a lazy task.

    Eagerly built tasks (small populations, pooled datasets) hold a plain list and are left
    alone: the setting only bounds memory, it never changes a result.
    """
    clients = task.clients
    if not isinstance(clients, LazyClients):
        return
    mb = backend.client_cache_mb
    count = backend.client_cache_clients
    if mb is None and count is None:
        return
    clients.configure(None if mb is None else int(mb * 2**20), count)
