"""MNIST IDX and CIFAR-10 pickle loaders, on tiny files written here."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from flsim.config.errors import ConfigError
from flsim.config.schema import TaskConfig
from flsim.tasks import build_task
from flsim.tasks.base import Task
from flsim.tasks.pooled import load_cifar10, load_mnist_idx


def _write_idx(path: Path, array: np.ndarray, *, gz: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if gz:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def _mnist_dir(root: Path, *, gz: bool, train: int = 20, test: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.Generator(np.random.PCG64(0))
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(test, dtype=np.uint8) * 3) % 10,
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        _write_idx(root / name, array, gz=gz)
    return arrays


def _rows(task: Task) -> list[tuple[bytes, int]]:
    """The training pool as a sorted multiset of (pixel bytes, label)."""
    pool = task.train_pool()
    return sorted((row.numpy().tobytes(), int(label)) for row, label in zip(pool.x, pool.y, strict=True))


def _expected_rows(images: np.ndarray, labels: np.ndarray) -> list[tuple[bytes, int]]:
    flat = (images.reshape(len(images), -1).astype(np.float64) / 255.0).astype(np.float32)
    return sorted((row.tobytes(), int(label)) for row, label in zip(flat, labels, strict=True))


def _mnist_task(path: Path, **updates: Any) -> Task:
    params = {"path": str(path), **updates.pop("params", {})}
    cfg = TaskConfig(dataset="mnist_idx", num_clients=3, dataset_params=params, **updates)
    return build_task(cfg, seed=0)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    arrays = _mnist_dir(tmp_path, gz=gz)
    data = load_mnist_idx(tmp_path)
    train_images = arrays["train-images-idx3-ubyte"]
    np.testing.assert_array_equal(data.x, train_images.reshape(20, -1) / np.float32(255.0))
    assert data.x.dtype == np.float32 and data.y.dtype == np.int64
    np.testing.assert_array_equal(data.y, arrays["train-labels-idx1-ubyte"])
    assert data.image_shape == (1, 28, 28)
    assert data.x_test is not None and data.y_test is not None
    np.testing.assert_array_equal(data.y_test, arrays["t10k-labels-idx1-ubyte"])
    # Pixel (row 5, col 7) of test image 3 lands at flat position 5*28+7.
    assert data.x_test[3, 5 * 28 + 7] == np.float32(arrays["t10k-images-idx3-ubyte"][3, 5, 7] / 255.0)

    task = _mnist_task(tmp_path, model={"name": "cnn"})
    assert _rows(task) == _expected_rows(train_images, arrays["train-labels-idx1-ubyte"])
    assert torch.equal(task.test.y, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"].astype(np.int64)))
    assert sum(task.client_sizes()) == 20 and len(task.test) == 10
    params = task.objective.init_params(torch.Generator().manual_seed(0))
    loss, grad = task.objective.loss_and_grad(params, task.clients[0].x, task.clients[0].y)
    assert np.isfinite(loss) and grad.shape == (task.dim,)


def test_mnist_torchvision_layout_and_caps(tmp_path: Path) -> None:
    _mnist_dir(tmp_path / "MNIST" / "raw", gz=True)
    task = _mnist_task(tmp_path, params={"max_samples": 12, "max_test_samples": 4})
    assert sum(task.client_sizes()) == 12 and len(task.test) == 4


def test_mnist_pooled_split(tmp_path: Path) -> None:
    _mnist_dir(tmp_path, gz=False)
    task = _mnist_task(tmp_path, params={"official_test": False}, test_fraction=0.2)
    assert sum(task.client_sizes()) + len(task.test) == 30
    assert 4 <= len(task.test) <= 8


def test_mnist_errors_name_the_path_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        build_task(TaskConfig(dataset="mnist_idx"), seed=0)
    assert info.value.key == "task.dataset_params.path"

    with pytest.raises(ConfigError) as info:
        _mnist_task(tmp_path / "nowhere")
    assert info.value.key == "task.dataset_params.path"

    arrays = _mnist_dir(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(ConfigError, match="t10k-labels-idx1-ubyte") as info:
        _mnist_task(tmp_path)
    assert info.value.key == "task.dataset_params.path"

    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", arrays["t10k-labels-idx1-ubyte"], gz=False)
    bad = bytearray((tmp_path / "train-images-idx3-ubyte").read_bytes())
    bad[2] = 0x0D  # float type code
    (tmp_path / "train-images-idx3-ubyte").write_bytes(bytes(bad))
    with pytest.raises(ConfigError, match="type code") as info:
        _mnist_task(tmp_path)
    assert info.value.key == "task.dataset_params.path"

    _write_idx(tmp_path / "train-images-idx3-ubyte", arrays["train-images-idx3-ubyte"][:, :, :27], gz=False)
    truncated = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(truncated[:-5])
    with pytest.raises(ConfigError, match="payload"):
        _mnist_task(tmp_path)

    _write_idx(tmp_path / "train-images-idx3-ubyte", arrays["train-images-idx3-ubyte"][:15], gz=False)
    with pytest.raises(ConfigError, match="15 images but 20 labels"):
        _mnist_task(tmp_path)


# --------------------------------------------------------------------------- CIFAR-10


def _cifar_dir(root: Path, per_batch: int = 4, test: int = 10) -> dict[str, tuple[np.ndarray, list[int]]]:
    rng = np.random.Generator(np.random.PCG64(1))
    directory = root / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    written = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        n = test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in (np.arange(n) + k) % 10]
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [b"x.png"] * n,
        }
        with open(directory / name, "wb") as handle:
            pickle.dump(batch, handle)
        written[name] = (data, labels)
    return written


def test_cifar10_round_trip(tmp_path: Path) -> None:
    written = _cifar_dir(tmp_path)
    for path in (tmp_path, tmp_path / "cifar-10-batches-py"):
        data = load_cifar10(path)
        train = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
        labels = [label for i in range(1, 6) for label in written[f"data_batch_{i}"][1]]
        np.testing.assert_array_equal(data.x, (train / 255.0).astype(np.float32))
        np.testing.assert_array_equal(data.y, labels)
        assert data.x_test is not None
        np.testing.assert_array_equal(data.x_test, (written["test_batch"][0] / 255.0).astype(np.float32))
        np.testing.assert_array_equal(data.y_test, written["test_batch"][1])
        assert data.image_shape == (3, 32, 32)

    # Channel-major layout: green channel (c=1), row 2, col 3 of training image 0.
    image = torch.from_numpy(load_cifar10(tmp_path).x[0]).reshape(3, 32, 32)
    assert float(image[1, 2, 3]) == np.float32(written["data_batch_1"][0][0, 1024 + 2 * 32 + 3] / 255.0)

    cfg = TaskConfig(
        dataset="cifar10",
        num_clients=2,
        dataset_params={"path": str(tmp_path)},
        model={"name": "cnn"},
    )
    task = build_task(cfg, seed=0)
    assert _rows(task) == _expected_rows(train, np.array(labels))
    params = task.objective.init_params(torch.Generator().manual_seed(0))
    logits = task.objective.predict(params, task.test.x)
    assert logits.shape == (10, 10)


def test_cifar10_errors(tmp_path: Path) -> None:
    _cifar_dir(tmp_path)
    directory = tmp_path / "cifar-10-batches-py"
    (directory / "data_batch_3").unlink()
    cfg = TaskConfig(dataset="cifar10", dataset_params={"path": str(tmp_path)})
    with pytest.raises(ConfigError, match="data_batch_3") as info:
        build_task(cfg, seed=0)
    assert info.value.key == "task.dataset_params.path"

    with open(directory / "data_batch_3", "wb") as handle:
        pickle.dump({b"data": np.zeros((2, 100), dtype=np.uint8), b"labels": [0, 1]}, handle)
    with pytest.raises(ConfigError, match="3072"):
        build_task(cfg, seed=0)

    (directory / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(ConfigError, match="cannot read"):
        build_task(cfg, seed=0)
