"""One Ray session per test module (num_cpus=2), always shut down."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def ray_session():
    import ray

    ray.init(
        address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    try:
        yield ray
    finally:
        ray.shutdown()
