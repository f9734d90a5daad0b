"""Model registry: torch modules wrapped as flat-vector :class:`ModuleObjective` s.

A model builder receives a :class:`ModelInput` (what the data looks like) and the
``task.model`` section, and returns a *fresh* objective every call: ``ModuleObjective``
rebinds the module's parameters to views of its flat buffers, so a module must never be
shared between two objectives or modified afterwards.

Features are always stored flat (``(batch, in_features)``); the CNN reshapes them to the
image shape inside the module, so partitioners, batching and the engine never care about
image layout. Layers are created with an explicit dtype so that a changed global default
dtype cannot alter the model. Parameter values come only from
``objective.init_params(generator)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass

import torch
from torch import nn

from flsim.config.errors import ConfigError
from flsim.config.schema import ModelConfig
from flsim.tasks.base import ModuleObjective, Objective
from flsim.tasks.layers import SELU, AlphaDropout, BatchStatNorm, lecun_normal_


@dataclass(frozen=True)
class ModelInput:
    """The data a model is built for.

    ``num_classes`` None means scalar regression (MSE on a 1-D target); otherwise the model
    outputs ``num_classes`` logits and is trained with cross-entropy on int64 labels.
    ``image_shape`` is ``(channels, height, width)`` for image datasets, else None.
    """

    in_features: int
    num_classes: int | None
    image_shape: tuple[int, int, int] | None = None
    dtype: torch.dtype = torch.float32


ModelBuilder = Callable[[ModelInput, ModelConfig], Objective]


def _head(spec: ModelInput, in_features: int) -> tuple[list[nn.Module], nn.Module]:
    """Output layer(s) and loss: logits + cross-entropy, or one output + MSE."""
    if spec.num_classes is None:
        return [nn.Linear(in_features, 1, dtype=spec.dtype), nn.Flatten(0)], nn.MSELoss()
    return [nn.Linear(in_features, spec.num_classes, dtype=spec.dtype)], nn.CrossEntropyLoss()


def linear(spec: ModelInput, cfg: ModelConfig) -> Objective:
    """One affine layer. On a regression task: a linear regression head with MSE.

    On a classification task it is a multinomial linear classifier trained with
    cross-entropy, i.e. the same model as ``logreg``; it is kept as a separate name so that a
    scenario can say ``linear`` for any dataset.
    """
    layers, loss = _head(spec, spec.in_features)
    return ModuleObjective(nn.Sequential(*layers), loss)


def logreg(spec: ModelInput, cfg: ModelConfig) -> Objective:
    """Multinomial logistic regression: one ``Linear`` to the class logits, cross-entropy."""
    if spec.num_classes is None:
        raise ConfigError("task.model.name", "logreg", "logreg needs a classification dataset")
    layers, loss = _head(spec, spec.in_features)
    return ModuleObjective(nn.Sequential(*layers), loss)


def _hidden_block(cfg: ModelConfig, width: int, dtype: torch.dtype) -> list[nn.Module]:
    """What follows each hidden ``Linear``: [norm,] ReLU, or SELU [, alpha dropout]."""
    if cfg.activation == "selu":
        return [SELU(), AlphaDropout(cfg.alpha_dropout)] if cfg.alpha_dropout > 0 else [SELU()]
    if cfg.norm == "batch":
        return [BatchStatNorm(width, dtype), nn.ReLU()]
    if cfg.norm == "group":
        return [nn.GroupNorm(cfg.groups, width, dtype=dtype), nn.ReLU()]
    return [nn.ReLU()]


def mlp(spec: ModelInput, cfg: ModelConfig) -> Objective:
    """Fully connected network with hidden widths ``task.model.hidden``.

    ``activation: relu`` (PyTorch's default init) with ``norm: none | batch | group`` before
    each ReLU; ``activation: selu`` with LeCun-normal init and optional alpha dropout, the
    normalisation-free variant (docs/building_blocks.md, "Models").
    """
    layers: list[nn.Module] = []
    width = spec.in_features
    for hidden in cfg.hidden:
        layers += [nn.Linear(width, hidden, dtype=spec.dtype), *_hidden_block(cfg, hidden, spec.dtype)]
        width = hidden
    head, loss = _head(spec, width)
    init = lecun_normal_ if cfg.activation == "selu" else None
    return ModuleObjective(nn.Sequential(*layers, *head), loss, weight_init=init)


def cnn(spec: ModelInput, cfg: ModelConfig) -> Objective:
    """Small CNN: two (3x3 conv, ReLU, 2x2 max-pool) blocks with 16 and 32 channels, linear head.

    Padding keeps the spatial size before each pool, so any image at least 4x4 works
    (8x8 digits -> 2x2, 28x28 MNIST -> 7x7, 32x32 CIFAR -> 8x8 feature maps).
    """
    if spec.image_shape is None:
        raise ConfigError("task.model.name", "cnn", "cnn needs an image dataset (digits, mnist_idx, cifar10)")
    channels, height, width = spec.image_shape
    if math.prod(spec.image_shape) != spec.in_features:
        raise ValueError(f"image shape {spec.image_shape} does not match {spec.in_features} features")
    if height < 4 or width < 4:
        raise ConfigError(
            "task.model.name", "cnn", f"images of {height}x{width} are too small for two 2x2 pools"
        )
    flat = 32 * (height // 4) * (width // 4)
    head, loss = _head(spec, flat)
    module = nn.Sequential(
        nn.Unflatten(1, spec.image_shape),
        nn.Conv2d(channels, 16, kernel_size=3, padding=1, dtype=spec.dtype),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, kernel_size=3, padding=1, dtype=spec.dtype),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(1),
        *head,
    )
    return ModuleObjective(module, loss)


MODELS: dict[str, ModelBuilder] = {"linear": linear, "logreg": logreg, "mlp": mlp, "cnn": cnn}

#: The model a dataset gets when ``task.model.name`` is null.
NATURAL_MODEL: dict[str, str] = {"linreg": "linear", "logreg": "logreg", "synthetic_leaf": "logreg"}


def natural_model(dataset: str) -> str:
    return NATURAL_MODEL.get(dataset, "mlp")


def resolve_model_name(cfg: ModelConfig, dataset: str, allowed: Collection[str]) -> str:
    """The model name to build, or a :class:`ConfigError` if it does not fit the dataset."""
    name = cfg.name if cfg.name is not None else natural_model(dataset)
    if name not in MODELS:
        raise ConfigError("task.model.name", name, f"unknown model (known: {', '.join(sorted(MODELS))})")
    if name not in allowed:
        raise ConfigError(
            "task.model.name",
            name,
            f"not available for dataset {dataset!r} (use one of: {', '.join(sorted(allowed))})",
        )
    check_mlp_options(cfg, name)
    return name


def check_mlp_options(cfg: ModelConfig, name: str) -> None:
    """The activation/norm/dropout options fit each other and the model (mlp only)."""
    options = {"activation": "relu", "norm": "none", "alpha_dropout": 0.0}
    for key, default in options.items():
        if name != "mlp" and getattr(cfg, key) != default:
            raise ConfigError(
                f"task.model.{key}", getattr(cfg, key), f"only the mlp has this option, not {name}"
            )
    if cfg.alpha_dropout > 0 and cfg.activation != "selu":
        raise ConfigError(
            "task.model.alpha_dropout", cfg.alpha_dropout, "alpha dropout needs activation: selu"
        )
    if cfg.norm != "none" and cfg.activation != "relu":
        raise ConfigError("task.model.norm", cfg.norm, "selu is self-normalising: norm layers go with relu")
    if cfg.norm == "group":
        for width in cfg.hidden:
            if width % cfg.groups:
                reason = f"{cfg.groups} groups do not divide the hidden width {width} (task.model.hidden)"
                raise ConfigError("task.model.groups", cfg.groups, reason)


def build_model(name: str, spec: ModelInput, cfg: ModelConfig) -> Objective:
    """A fresh objective for model ``name`` (never reuse one across tasks)."""
    return MODELS[name](spec, cfg)
