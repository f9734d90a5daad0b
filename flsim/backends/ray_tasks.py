"""Independent runs as parallel Ray tasks: the Ray path of ``flsim sweep``.

It lives here because ``backends`` is the one package that imports ``ray``. The caller (the
sweep) passes the function to run remotely, so this module knows nothing about sweeps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flsim.backends.ray_backend import init_ray, release_idle_workers

Item = TypeVar("Item")
Result = TypeVar("Result")


def map_on_ray(
    function: Callable[[Item], Result],
    items: list[Item],
    address: str | None,
    finished: Callable[[Item, Result], None],
    lost: Callable[[Exception], Result],
) -> None:
    """Run ``function(item)`` as one Ray task per item, calling ``finished`` as each ends.

    A task that dies (its node lost) yields ``lost(exc)`` instead, so its siblings go on.
    """
    import ray

    owns = init_ray(address)
    release_idle_workers()  # pooled actors would hold the CPUs the tasks need
    try:
        remote = ray.remote(num_cpus=1, max_retries=1)(function)
        refs = {remote.remote(item): item for item in items}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                result = ray.get(ready[0])
            except Exception as exc:  # the task itself died: report, go on
                result = lost(exc)
            finished(refs[ready[0]], result)
    finally:
        if owns:
            ray.shutdown()
