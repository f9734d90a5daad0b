"""Pooled image datasets (digits, MNIST IDX, CIFAR-10 pickles) split among clients.

Nothing is ever downloaded: ``digits`` ships with scikit-learn, and the MNIST and CIFAR-10
loaders read the standard files from ``task.dataset_params.path``. Features are float32 in
[0, 1], stored flat ``(n, C·H·W)`` (the CNN reshapes them); labels are int64.

Pipeline (all draws seeded from the scenario seed):

1. load train (and the official test split where one exists);
2. without an official test split (digits, or ``official_test: false``), hold out a
   stratified ``task.test_fraction`` of the pool (purpose ``"split"``);
3. optionally cap the training set at ``max_samples`` and the test set at
   ``max_test_samples`` by seeded subsampling (purpose ``"subsample"``);
4. split the training set among clients with ``task.partition`` (purpose ``"partition"``).
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flsim.config.errors import ConfigError
from flsim.config.schema import TaskConfig
from flsim.rng import numpy_rng
from flsim.tasks.base import Shard, Task
from flsim.tasks.common import to_tensor
from flsim.tasks.lazy_clients import LazyClients
from flsim.tasks.models import MODELS, ModelInput, build_model, resolve_model_name
from flsim.tasks.params import MAX_SAMPLES, DatasetParams
from flsim.tasks.partition import partition


@dataclass(frozen=True)
class PooledData:
    """Arrays as loaded: flat float32 features, int64 labels, optional official test split."""

    x: np.ndarray
    y: np.ndarray
    image_shape: tuple[int, int, int]
    num_classes: int
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None


# --------------------------------------------------------------------------- digits


def _bundled_digits_file() -> Path | None:
    """scikit-learn's ``datasets/data/digits.csv.gz``, located without importing sklearn."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    return path if path.is_file() else None


def load_digits_data() -> PooledData:
    """scikit-learn's 8x8 digits (1797 images, bundled with the package), pixels / 16.

    The bundled CSV is read directly: ``import sklearn.datasets`` costs several seconds
    (SciPy), paid again on every Ray actor. ``sklearn.datasets.load_digits`` is the
    fallback if the file is not where scikit-learn keeps it.
    """
    path = _bundled_digits_file()
    if path is not None:
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
        pixels, target = table[:, :-1], table[:, -1]
    else:  # pragma: no cover - depends on the installed scikit-learn layout
        from sklearn.datasets import load_digits

        bunch = load_digits()
        pixels, target = np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target)
    x = (pixels / 16.0).astype(np.float32)
    y = np.asarray(target, dtype=np.int64)
    return PooledData(x=x, y=y, image_shape=(1, 8, 8), num_classes=10)


# --------------------------------------------------------------------------- MNIST IDX

_IDX_UBYTE = 0x08
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path, expected_ndim: int) -> np.ndarray:
    """Read one IDX file of unsigned bytes (optionally gzip-compressed) into a uint8 array.

    Header: two zero bytes, type code 0x08 (ubyte), the number of dimensions, then each
    dimension as a big-endian uint32. Anything else is rejected with the reason, because a
    truncated download or a wrong file otherwise shows up much later as a reshape error.
    """
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise ConfigError(DatasetParams.key("path"), str(path), f"cannot read IDX file: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ConfigError(DatasetParams.key("path"), str(path), "not an IDX file (bad magic number)")
    if raw[2] != _IDX_UBYTE:
        raise ConfigError(
            DatasetParams.key("path"), str(path), f"IDX type code 0x{raw[2]:02x}; only unsigned bytes (0x08)"
        )
    ndim = raw[3]
    if ndim != expected_ndim:
        raise ConfigError(
            DatasetParams.key("path"), str(path), f"IDX file has {ndim} dimensions, expected {expected_ndim}"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ConfigError(DatasetParams.key("path"), str(path), "IDX header is truncated")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise ConfigError(
            DatasetParams.key("path"),
            str(path),
            f"IDX payload has {len(raw) - header} bytes, header {shape} says {expected}",
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find_file(directories: list[Path], stem: str) -> Path | None:
    # Some mirrors write "train-images.idx3-ubyte" instead of "train-images-idx3-ubyte".
    alt = stem.replace("-idx", ".idx")
    for directory in directories:
        for name in (stem, stem + ".gz", alt, alt + ".gz"):
            candidate = directory / name
            if candidate.is_file():
                return candidate
    return None


def mnist_files(path: Path) -> dict[str, Path]:
    """The four IDX files under ``path`` by role; a missing one is a :class:`ConfigError`.

    ``validate`` calls it too, so a directory without its files fails there, not in a run.
    """
    directories = [path, path / "MNIST" / "raw", path / "raw"]
    files: dict[str, Path] = {}
    for role, stem in MNIST_FILES.items():
        found = _find_file(directories, stem)
        if found is None:
            raise ConfigError(
                DatasetParams.key("path"), str(path), f"missing {stem} (or {stem}.gz) for dataset 'mnist_idx'"
            )
        files[role] = found
    return files


def load_mnist_idx(path: Path) -> PooledData:
    """MNIST (or Fashion-MNIST, same format) from the four standard IDX files in ``path``.

    Also looks in ``path/MNIST/raw`` and ``path/raw`` (torchvision's layout).
    """
    files = mnist_files(path)
    arrays = {}
    for split in ("train", "test"):
        images = read_idx(files[f"{split}_images"], 3)
        labels = read_idx(files[f"{split}_labels"], 1)
        if images.shape[0] != labels.shape[0]:
            raise ConfigError(
                DatasetParams.key("path"),
                str(path),
                f"{split}: {images.shape[0]} images but {labels.shape[0]} labels",
            )
        arrays[split] = (images, labels)
    train_images, train_labels = arrays["train"]
    test_images, test_labels = arrays["test"]
    if train_images.shape[1:] != test_images.shape[1:]:
        raise ConfigError(
            DatasetParams.key("path"),
            str(path),
            f"train images are {train_images.shape[1:]} but test images {test_images.shape[1:]}",
        )
    _, height, width = train_images.shape
    num_classes = int(max(train_labels.max(initial=0), test_labels.max(initial=0))) + 1
    return PooledData(
        x=_to_unit(train_images.reshape(len(train_images), -1)),
        y=train_labels.astype(np.int64),
        image_shape=(1, height, width),
        num_classes=max(num_classes, 10),
        x_test=_to_unit(test_images.reshape(len(test_images), -1)),
        y_test=test_labels.astype(np.int64),
    )


# --------------------------------------------------------------------------- CIFAR-10

CIFAR_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_TEST_BATCH = "test_batch"
CIFAR_PIXELS = 3 * 32 * 32


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: a pickled dict with b'data' (uint8, N×3072) and b'labels'.

    Rows are channel-major (1024 red, 1024 green, 1024 blue values), so a row reshapes
    directly to (3, 32, 32). Note that unpickling runs code: only point ``path`` at files
    you trust, as with any pickle.
    """
    try:
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise ConfigError(DatasetParams.key("path"), str(path), f"cannot read CIFAR-10 batch: {exc}") from exc
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ConfigError(
            DatasetParams.key("path"), str(path), "not a CIFAR-10 batch (no b'data' / b'labels')"
        )
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_PIXELS:
        raise ConfigError(
            DatasetParams.key("path"),
            str(path),
            f"b'data' must be uint8 of shape (N, {CIFAR_PIXELS}), got {data.dtype} {data.shape}",
        )
    if labels.shape != (data.shape[0],) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise ConfigError(DatasetParams.key("path"), str(path), "b'labels' must be N integers in 0..9")
    return data, labels


def cifar_directory(path: Path) -> Path:
    """The folder holding the six CIFAR-10 batches (``path`` or ``path/cifar-10-batches-py``).

    A missing batch is a :class:`ConfigError`; ``validate`` calls it too.
    """
    directory = path
    if not (directory / CIFAR_TEST_BATCH).is_file() and (path / "cifar-10-batches-py").is_dir():
        directory = path / "cifar-10-batches-py"
    for name in [*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH]:
        if not (directory / name).is_file():
            raise ConfigError(
                DatasetParams.key("path"),
                str(path),
                f"missing {name}; expected the 'cifar-10-batches-py' directory or its parent",
            )
    return directory


def load_cifar10(path: Path) -> PooledData:
    """CIFAR-10 from the python-pickle directory ``cifar-10-batches-py`` (or its parent)."""
    directory = cifar_directory(path)
    train = [read_cifar_batch(directory / name) for name in CIFAR_TRAIN_BATCHES]
    x_test, y_test = read_cifar_batch(directory / CIFAR_TEST_BATCH)
    return PooledData(
        x=_to_unit(np.concatenate([d for d, _ in train])),
        y=np.concatenate([labels for _, labels in train]),
        image_shape=(3, 32, 32),
        num_classes=10,
        x_test=_to_unit(x_test),
        y_test=y_test,
    )


def _to_unit(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 in [0, 1] (division in float64, then one rounding)."""
    return (pixels.astype(np.float64) / 255.0).astype(np.float32)


# --------------------------------------------------------------------------- task assembly


def stratified_split(
    labels: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) sorted index arrays, with round(test_fraction · n) test samples in all.

    Each class gives ⌊test_fraction · count⌋ samples, and the remaining quota goes to the
    classes with the largest fractional parts, so class proportions are kept as closely as
    integers allow even for tiny classes (rounding class by class could overshoot badly).
    """
    classes = np.unique(labels)
    members = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    quota = np.array([test_fraction * len(m) for m in members])
    take = np.floor(quota).astype(np.int64)
    leftover = round(test_fraction * len(labels)) - int(take.sum())
    if leftover > 0:
        take[np.argsort(-(quota - take), kind="stable")[:leftover]] += 1
    test = [m[:k] for m, k in zip(members, take, strict=True)]
    train = [m[k:] for m, k in zip(members, take, strict=True)]
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _subsample(n: int, cap: int | None, rng: np.random.Generator) -> np.ndarray | None:
    if cap is None or cap >= n:
        return None
    return np.sort(rng.choice(n, size=cap, replace=False))


@dataclass(frozen=True)
class PooledOptions:
    """The dataset_params every pooled dataset understands (besides ``path``)."""

    model_name: str
    official_test: bool
    max_samples: int | None
    max_test_samples: int | None


def _read_options(cfg: TaskConfig, p: DatasetParams, *, has_official_test: bool) -> PooledOptions:
    """Validate all parameters and the model *before* loading, so a typo fails fast."""
    official = p.boolean("official_test", True) if has_official_test else False
    max_samples = p.optional_integer("max_samples", minimum=1, maximum=MAX_SAMPLES)
    max_test = p.optional_integer("max_test_samples", minimum=1, maximum=MAX_SAMPLES)
    p.finish()
    model_name = resolve_model_name(cfg.model, cfg.dataset, allowed=MODELS.keys())
    return PooledOptions(model_name, official, max_samples, max_test)


def _assemble(cfg: TaskConfig, seed: int, data: PooledData, options: PooledOptions) -> Task:
    """Steps 2-4 of the module pipeline, plus a fresh model."""
    if options.official_test and data.x_test is not None and data.y_test is not None:
        x, y, x_test, y_test = data.x, data.y, data.x_test, data.y_test
    else:
        x_all = data.x if data.x_test is None else np.concatenate([data.x, data.x_test])
        y_all = data.y if data.y_test is None else np.concatenate([data.y, data.y_test])
        train_idx, test_idx = stratified_split(y_all, cfg.test_fraction, numpy_rng(seed, "split"))
        if len(test_idx) == 0 or len(train_idx) == 0:
            raise ConfigError(
                "task.test_fraction", cfg.test_fraction, f"leaves an empty split of {len(y_all)} samples"
            )
        x, y, x_test, y_test = x_all[train_idx], y_all[train_idx], x_all[test_idx], y_all[test_idx]

    keep = _subsample(len(y), options.max_samples, numpy_rng(seed, "subsample", node=0))
    if keep is not None:
        x, y = x[keep], y[keep]
    keep = _subsample(len(y_test), options.max_test_samples, numpy_rng(seed, "subsample", node=1))
    if keep is not None:
        x_test, y_test = x_test[keep], y_test[keep]

    parts = partition(y, cfg.num_clients, cfg.partition, numpy_rng(seed, "partition"))
    spec = ModelInput(int(x.shape[1]), data.num_classes, data.image_shape)
    return Task(
        name=cfg.dataset,
        clients=pooled_clients(x, y, parts),
        test=Shard(to_tensor(x_test), to_tensor(y_test)),
        objective=build_model(options.model_name, spec, cfg.model),
        classification=True,
        num_classes=data.num_classes,
    )


def pooled_clients(x: np.ndarray, y: np.ndarray, parts: list[np.ndarray]) -> LazyClients:
    """Clients as index slices of the pool, gathered when first used (issue 17).

    The partition is kept as one array of sample ids in client order and N + 1 offsets (not N
    arrays, nor N copies of the samples); client k's shard is ``x[ids[o_k:o_{k+1}]]``, built on
    demand into the client cache, the same arrays the eager copy held. The cache is unbounded
    unless ``backend.client_cache_*`` says otherwise: it then holds at most one copy of the
    training pool, as the eager build did, and a run never re-gathers a client.
    """
    sizes = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def build(k: int) -> Shard:
        rows = ids[offsets[k] : offsets[k + 1]]
        return Shard(to_tensor(x[rows]), to_tensor(y[rows]))

    return LazyClients(len(parts), build, sizes.tolist, max_bytes=None)


def build_digits(cfg: TaskConfig, seed: int) -> Task:
    """``dataset: digits``; dataset_params: ``max_samples``, ``max_test_samples`` (optional caps).

    Digits has no official test split: ``task.test_fraction`` is held out, stratified.
    """
    return _assemble(cfg, seed, load_digits_data(), digits_params(cfg))


def digits_params(cfg: TaskConfig) -> PooledOptions:
    return _read_options(cfg, DatasetParams("digits", cfg.dataset_params), has_official_test=False)


def mnist_idx_params(cfg: TaskConfig) -> tuple[Path, PooledOptions]:
    """The data directory (it must exist) and the options, checked before anything loads."""
    p = DatasetParams("mnist_idx", cfg.dataset_params)
    path = p.path("path", MNIST_WHAT)
    mnist_files(path)
    return path, _read_options(cfg, p, has_official_test=True)


def cifar10_params(cfg: TaskConfig) -> tuple[Path, PooledOptions]:
    p = DatasetParams("cifar10", cfg.dataset_params)
    path = p.path("path", CIFAR_WHAT)
    cifar_directory(path)
    return path, _read_options(cfg, p, has_official_test=True)


MNIST_WHAT = "a directory with the four MNIST IDX files (optionally .gz)"
CIFAR_WHAT = "the 'cifar-10-batches-py' directory or its parent"


def build_mnist_idx(cfg: TaskConfig, seed: int) -> Task:
    """``dataset: mnist_idx``; dataset_params: ``path`` (required), ``official_test`` (true),
    ``max_samples``, ``max_test_samples``.

    ``official_test: true`` evaluates on the t10k files (``task.test_fraction`` unused);
    false pools train and t10k and holds out ``task.test_fraction``, stratified.
    """
    path, options = mnist_idx_params(cfg)
    return _assemble(cfg, seed, load_mnist_idx(path), options)


def build_cifar10(cfg: TaskConfig, seed: int) -> Task:
    """``dataset: cifar10``; dataset_params as for ``mnist_idx`` (test split: ``test_batch``)."""
    path, options = cifar10_params(cfg)
    return _assemble(cfg, seed, load_cifar10(path), options)
