"""Partitioners: exact coverage, min sizes, determinism, and skew that responds to its knob."""

from __future__ import annotations

import numpy as np
import pytest

from flsim.config.errors import ConfigError
from flsim.config.schema import PartitionConfig
from flsim.rng import numpy_rng
from flsim.tasks import PARTITIONERS
from flsim.tasks.partition import partition


def _labels(n: int = 1000, classes: int = 10, seed: int = 7) -> np.ndarray:
    return np.random.Generator(np.random.PCG64(seed)).integers(0, classes, n)


def _label_entropy(labels: np.ndarray, parts: list[np.ndarray], classes: int = 10) -> float:
    """Mean over clients of the entropy (nats) of the client's label distribution."""
    values = []
    for part in parts:
        p = np.bincount(labels[part], minlength=classes) / len(part)
        p = p[p > 0]
        values.append(float(-(p * np.log(p)).sum()))
    return float(np.mean(values))


CASES = [
    PartitionConfig(kind="iid"),
    PartitionConfig(kind="dirichlet", alpha=0.1),
    PartitionConfig(kind="dirichlet", alpha=10.0),
    PartitionConfig(kind="shards", shards_per_client=2),
    PartitionConfig(kind="shards", shards_per_client=5),
    PartitionConfig(kind="quantity_skew", alpha=1.5),
    PartitionConfig(kind="quantity_skew", alpha=1e-6, min_size=5),
]


@pytest.mark.parametrize("cfg", CASES, ids=lambda c: f"{c.kind}-{c.alpha}-{c.shards_per_client}")
@pytest.mark.parametrize("num_clients", [1, 7, 20])
def test_every_sample_assigned_exactly_once(cfg: PartitionConfig, num_clients: int) -> None:
    labels = _labels()
    parts = partition(labels, num_clients, cfg, numpy_rng(3, "partition"))
    assert len(parts) == num_clients
    everything = np.concatenate(parts)
    assert np.array_equal(np.sort(everything), np.arange(len(labels)))
    for part in parts:
        assert part.dtype == np.int64
        assert len(part) >= cfg.min_size
        assert np.all(np.diff(part) > 0), "indices must be sorted (and unique) within a client"


@pytest.mark.parametrize("cfg", CASES, ids=lambda c: f"{c.kind}-{c.alpha}")
def test_partition_is_a_function_of_the_generator(cfg: PartitionConfig) -> None:
    labels = _labels()
    first = partition(labels, 8, cfg, numpy_rng(5, "partition"))
    again = partition(labels, 8, cfg, numpy_rng(5, "partition"))
    other = partition(labels, 8, cfg, numpy_rng(6, "partition"))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    if cfg.kind == "quantity_skew" and cfg.alpha < 1e-3:
        sizes = [len(p) for p in first]
        assert max(sizes) - min(sizes) <= 1
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_registry_names_match_schema() -> None:
    assert set(PARTITIONERS) == {"iid", "dirichlet", "shards", "quantity_skew"}


def test_dirichlet_skew_responds_to_alpha() -> None:
    labels = _labels(2000)
    skewed = partition(labels, 10, PartitionConfig(kind="dirichlet", alpha=0.05), numpy_rng(1, "partition"))
    mild = partition(labels, 10, PartitionConfig(kind="dirichlet", alpha=100.0), numpy_rng(1, "partition"))
    iid = partition(labels, 10, PartitionConfig(kind="iid"), numpy_rng(1, "partition"))
    h_skewed, h_mild, h_iid = (_label_entropy(labels, p) for p in (skewed, mild, iid))
    assert h_skewed < 0.5 * h_mild
    assert h_mild > 0.95 * np.log(10)
    assert abs(h_mild - h_iid) < 0.05


def test_shards_give_each_client_few_classes() -> None:
    labels = np.sort(_labels(1000))  # label order must not matter
    parts = partition(
        labels, 10, PartitionConfig(kind="shards", shards_per_client=2), numpy_rng(0, "partition")
    )
    classes_per_client = [len(np.unique(labels[p])) for p in parts]
    # Each shard of 50 samples spans at most 2 classes (every class has > 50 samples).
    assert max(classes_per_client) <= 4
    assert np.mean(classes_per_client) < 4
    sizes = [len(p) for p in parts]
    assert sizes == [100] * 10


def test_quantity_skew_grows_with_alpha_and_keeps_labels_iid() -> None:
    labels = _labels(5000)
    flat = partition(labels, 10, PartitionConfig(kind="quantity_skew", alpha=1e-6), numpy_rng(2, "partition"))
    steep = partition(labels, 10, PartitionConfig(kind="quantity_skew", alpha=2.0), numpy_rng(2, "partition"))
    ratio = lambda parts: max(len(p) for p in parts) / min(len(p) for p in parts)  # noqa: E731
    assert ratio(flat) < 1.01
    assert ratio(steep) > 50
    biggest = max(steep, key=len)
    assert _label_entropy(labels, [biggest]) > 0.98 * np.log(10)


def test_too_many_clients_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        partition(_labels(30), 20, PartitionConfig(kind="iid", min_size=2), numpy_rng(0, "partition"))
    assert info.value.key == "task.num_clients"


def test_impossible_dirichlet_gives_up_with_clear_error() -> None:
    labels = _labels(200, classes=2)
    cfg = PartitionConfig(kind="dirichlet", alpha=0.01, min_size=9)
    with pytest.raises(ConfigError) as info:
        partition(labels, 20, cfg, numpy_rng(0, "partition"))
    assert info.value.key == "task.partition.alpha"
    assert "min_size" in info.value.reason


def test_too_many_shards_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        partition(
            _labels(50), 10, PartitionConfig(kind="shards", shards_per_client=6), numpy_rng(0, "partition")
        )
    assert info.value.key == "task.partition.shards_per_client"
