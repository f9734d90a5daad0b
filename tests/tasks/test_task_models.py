"""Every model on digits: gradients (finite differences, float32 vs float64) and descent."""

from __future__ import annotations

import pytest
import torch

from flsim.config.errors import ConfigError
from flsim.config.schema import ModelConfig, TaskConfig
from flsim.tasks import MODELS, ModelInput, build_task
from flsim.tasks.base import Task

DIGITS = ModelInput(in_features=64, num_classes=10, image_shape=(1, 8, 8))


def _digits(model: str) -> Task:
    cfg = TaskConfig(dataset="digits", num_clients=4, model={"name": model, "hidden": [16]})
    return build_task(cfg, seed=2)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_gradient_matches_finite_differences(model: str) -> None:
    task = _digits(model)
    shard = task.clients[0]
    x, y = shard.x[:64], shard.y[:64]
    params32 = task.objective.init_params(torch.Generator().manual_seed(0))
    assert params32.dtype == torch.float32 and params32.shape == (task.dim,)

    # The same architecture in float64, where central differences are accurate to ~1e-9.
    wide = MODELS[model](
        ModelInput(64, 10, (1, 8, 8), dtype=torch.float64), ModelConfig(name=model, hidden=[16])
    )
    assert wide.dim == task.dim
    params = params32.double()
    xd = x.double()
    loss, grad = wide.loss_and_grad(params, xd, y)
    top = torch.argsort(grad.abs(), descending=True)[:3].tolist()
    rand = torch.randint(0, task.dim, (2,), generator=torch.Generator().manual_seed(1)).tolist()
    eps = 1e-6
    for i in top + rand:
        bump = torch.zeros_like(params)
        bump[i] = eps
        numeric = (wide.loss(params + bump, xd, y) - wide.loss(params - bump, xd, y)) / (2 * eps)
        assert abs(numeric - float(grad[i])) <= 1e-6 * max(1.0, abs(float(grad[i]))), (
            i,
            numeric,
            float(grad[i]),
        )
    assert abs(grad[top[0]]) > 1e-4  # the check is not vacuous

    # The float32 objective the task actually uses agrees with the float64 one.
    loss32, grad32 = task.objective.loss_and_grad(params32, x, y)
    assert grad32.dtype == torch.float32
    assert loss32 == pytest.approx(loss, rel=1e-5)
    assert float((grad32.double() - grad).norm()) <= 1e-4 * float(grad.norm())


@pytest.mark.parametrize("model", sorted(MODELS))
def test_gradient_descent_decreases_the_loss(model: str) -> None:
    task = _digits(model)
    shard = task.clients[1]
    params = task.objective.init_params(torch.Generator().manual_seed(3))
    start = task.objective.loss(params, shard.x, shard.y)
    for _ in range(5):
        _, grad = task.objective.loss_and_grad(params, shard.x, shard.y)
        params = params - 0.2 * grad
    end = task.objective.loss(params, shard.x, shard.y)
    assert end < start - 0.02


def test_init_is_a_function_of_the_generator() -> None:
    objective = MODELS["cnn"](DIGITS, ModelConfig(name="cnn"))
    a = objective.init_params(torch.Generator().manual_seed(5))
    b = objective.init_params(torch.Generator().manual_seed(5))
    c = objective.init_params(torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float((a == 0).double().mean()) < 0.01  # every weight and bias is initialised


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8)])
def test_cnn_handles_each_image_size(shape: tuple[int, int, int]) -> None:
    features = shape[0] * shape[1] * shape[2]
    objective = MODELS["cnn"](ModelInput(features, 10, shape), ModelConfig(name="cnn"))
    params = objective.init_params(torch.Generator().manual_seed(0))
    x = torch.rand(3, features, generator=torch.Generator().manual_seed(1))
    assert objective.predict(params, x).shape == (3, 10)


def test_cnn_needs_an_image() -> None:
    with pytest.raises(ConfigError) as info:
        MODELS["cnn"](ModelInput(10, 3), ModelConfig(name="cnn"))
    assert info.value.key == "task.model.name"


@pytest.mark.parametrize("model", ["linear", "mlp"])
def test_regression_head_is_mse(model: str) -> None:
    objective = MODELS[model](ModelInput(5, None), ModelConfig(name=model, hidden=[4]))
    params = objective.init_params(torch.Generator().manual_seed(0))
    x = torch.rand(7, 5, generator=torch.Generator().manual_seed(1))
    y = torch.rand(7, generator=torch.Generator().manual_seed(2))
    pred = objective.predict(params, x)
    assert pred.shape == (7,)
    assert objective.loss(params, x, y) == pytest.approx(float(((pred - y) ** 2).mean()), rel=1e-6)
