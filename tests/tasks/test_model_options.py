"""task.model activation / norm / alpha_dropout: init, self-normalisation, exact layers, randomness.

Checks the mathematics: LeCun-normal weights have variance 1/fan_in; a 32-layer SELU network
keeps its activations at mean 0, variance 1 (while the default-initialised ReLU network's
vanish); alpha dropout keeps (0, 1); the batch-statistics norm equals PyTorch's BatchNorm
without running buffers; gradients match finite differences; dropout masks come only from
the generator the caller passes.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import flsim
from flsim.algorithms.client import Batch, ClientContext
from flsim.config.errors import ConfigError, ConfigErrors
from flsim.config.schema import ModelConfig
from flsim.scenario import load_scenario
from flsim.tasks import MODELS, ModelInput
from flsim.tasks.layers import SELU, AlphaDropout, BatchStatNorm
from tests.builders import metrics_without_wall_time, tiny_digits

DIGITS = ModelInput(in_features=64, num_classes=10, image_shape=(1, 8, 8))


def _mlp(spec: ModelInput = DIGITS, **options) -> object:
    return MODELS["mlp"](spec, ModelConfig(name="mlp", **options))


def _layers(objective, kind: type) -> list[nn.Module]:
    return [m for m in objective.module.modules() if isinstance(m, kind)]


def test_lecun_normal_init_has_variance_one_over_fan_in():
    objective = _mlp(ModelInput(256, 10), hidden=[512, 512], activation="selu")
    objective.init_params(torch.Generator().manual_seed(0))
    for layer in _layers(objective, nn.Linear):
        w = layer.weight.detach().double().flatten()
        fan_in = layer.weight.shape[1]
        n = w.numel()
        # The sample variance of n normal draws has relative standard deviation √(2/n).
        assert abs(float(w.var()) * fan_in - 1.0) < 5 * math.sqrt(2 / n)
        assert abs(float(w.mean())) < 5 / math.sqrt(fan_in * n)
        assert torch.count_nonzero(layer.bias) == 0


def test_relu_default_init_is_unchanged_and_norm_layers_start_as_identity():
    plain = _mlp(hidden=[32])
    assert [type(m) for m in plain.module] == [nn.Linear, nn.ReLU, nn.Linear]
    reference = nn.Linear(64, 32)
    bound = 1 / math.sqrt(64)  # kaiming_uniform(a=√5) and the bias both give U(−1/√fan_in, 1/√fan_in)
    plain.init_params(torch.Generator().manual_seed(1))
    first = plain.module[0]
    assert (
        float(first.weight.detach().abs().max()) <= bound and float(first.bias.detach().abs().max()) <= bound
    )
    assert first.weight.shape == reference.weight.shape
    for norm in ("batch", "group"):
        objective = _mlp(hidden=[32, 16], norm=norm, groups=4)
        objective.init_params(torch.Generator().manual_seed(1))
        scales = _layers(objective, BatchStatNorm if norm == "batch" else nn.GroupNorm)
        assert len(scales) == 2
        for layer in scales:
            assert torch.equal(layer.weight, torch.ones_like(layer.weight))
            assert torch.equal(layer.bias, torch.zeros_like(layer.bias))


def _activation_moments(objective, x: torch.Tensor, kind: type) -> list[tuple[float, float]]:
    moments = []
    with torch.no_grad():
        for module in objective.module:
            x = module(x)
            if isinstance(module, kind):
                flat = x.double().flatten()
                moments.append((float(flat.mean()), float(flat.var(correction=0))))
    return moments


def test_deep_selu_network_self_normalises_and_deep_relu_does_not():
    x = torch.randn(1000, 64, generator=torch.Generator().manual_seed(2))
    deep = [64] * 32
    selu = _mlp(hidden=deep, activation="selu")
    selu.init_params(torch.Generator().manual_seed(3))
    moments = _activation_moments(selu, x, SELU)
    assert len(moments) == 32
    mean, var = moments[-1]
    assert abs(mean) < 0.1 and 0.8 <= var <= 1.2, moments[-1]
    relu = _mlp(hidden=deep)
    relu.init_params(torch.Generator().manual_seed(3))
    # PyTorch's default init has weight variance 1/(3 fan_in): the signal shrinks to the biases' floor.
    assert _activation_moments(relu, x, nn.ReLU)[-1][1] < 0.01


def test_alpha_dropout_keeps_mean_zero_and_variance_one():
    z = torch.randn(200_000, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    x = SELU()(z)
    assert abs(float(x.mean())) < 0.01 and abs(float(x.var()) - 1.0) < 0.02  # (0, 1) is selu's fixed point
    layer = AlphaDropout(0.1, torch.Generator().manual_seed(5))
    dropped = layer(x)
    saturated = layer.a * layer.saturation + layer.b  # where a dropped unit lands
    assert float((dropped == saturated).double().mean()) == pytest.approx(0.1, abs=0.005)
    assert abs(float(dropped.mean())) < 0.01
    assert abs(float(dropped.var()) - 1.0) < 0.02
    layer = AlphaDropout(0.1)  # no generator: the identity (evaluation)
    assert torch.equal(layer(x), x)


def test_batch_statistics_norm_equals_torch_batchnorm_without_buffers():
    x = torch.randn(50, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    ours = BatchStatNorm(16, torch.float64)
    reference = nn.BatchNorm1d(16, track_running_stats=False, dtype=torch.float64)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 2.0, generator=torch.Generator().manual_seed(7))
        ours.bias.uniform_(-1.0, 1.0, generator=torch.Generator().manual_seed(8))
        reference.weight.copy_(ours.weight)
        reference.bias.copy_(ours.bias)
    torch.testing.assert_close(ours(x), reference(x), rtol=1e-12, atol=1e-12)
    one = ours(x[:1])  # a one-sample batch normalises to β instead of failing
    torch.testing.assert_close(one[0], ours.bias.detach())
    assert list(ours.buffers()) == []


@pytest.mark.parametrize(
    "options",
    [{"activation": "selu"}, {"norm": "batch"}, {"norm": "group", "groups": 4}],
    ids=["selu", "batch", "group"],
)
def test_gradients_match_finite_differences(options):
    wide = _mlp(ModelInput(64, 10, dtype=torch.float64), hidden=[16], **options)
    params = wide.init_params(torch.Generator().manual_seed(9))
    x = torch.randn(32, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(10))
    y = torch.arange(32) % 10
    _, grad = wide.loss_and_grad(params, x, y)
    eps = 1e-6
    for i in [*torch.argsort(grad.abs(), descending=True)[:4].tolist(), 0, wide.dim - 1]:
        bump = torch.zeros_like(params)
        bump[i] = eps
        numeric = (wide.loss(params + bump, x, y) - wide.loss(params - bump, x, y)) / (2 * eps)
        assert abs(numeric - float(grad[i])) <= 1e-6 * max(1.0, abs(float(grad[i])))
    assert float(grad.abs().max()) > 1e-3


def test_dropout_draws_only_from_the_given_generator():
    objective = _mlp(hidden=[32], activation="selu", alpha_dropout=0.2)
    assert objective.stochastic and not _mlp(hidden=[32]).stochastic
    params = objective.init_params(torch.Generator().manual_seed(11))
    x = torch.randn(40, 64, generator=torch.Generator().manual_seed(12))
    y = torch.arange(40) % 10
    global_state = torch.get_rng_state()
    a = objective.loss_and_grad(params, x, y, generator=torch.Generator().manual_seed(13))
    b = objective.loss_and_grad(params, x, y, generator=torch.Generator().manual_seed(13))
    c = objective.loss_and_grad(params, x, y, generator=torch.Generator().manual_seed(14))
    off = objective.loss_and_grad(params, x, y)
    assert torch.equal(torch.get_rng_state(), global_state)
    assert a[0] == b[0] and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    assert off[0] == pytest.approx(objective.loss(params, x, y), rel=1e-6)  # no generator: no dropout
    assert off[0] != pytest.approx(a[0], rel=1e-6)
    # A client's gradient oracle hands the model its own round stream.
    from flsim.tasks.base import Shard

    ctx = ClientContext(0, Shard(x, y), objective, torch.Generator().manual_seed(13), None, 0.1, 0)
    assert torch.equal(ctx.grad(params, Batch(x, y)), a[1])


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ({"alpha_dropout": 0.1}, "task.model.alpha_dropout"),
        ({"activation": "selu", "norm": "batch"}, "task.model.norm"),
        ({"norm": "group", "groups": 5, "hidden": [64]}, "task.model.groups"),
        ({"name": "cnn", "activation": "selu"}, "task.model.activation"),
        ({"activation": "tanh"}, "task.model.activation"),
        ({"activation": "selu", "alpha_dropout": 1.0}, "task.model.alpha_dropout"),
    ],
    ids=["dropout-without-selu", "selu-with-norm", "groups-do-not-divide", "not-mlp", "unknown", "rate-one"],
)
def test_bad_model_options_name_the_key(model, key):
    with pytest.raises((ConfigError, ConfigErrors)) as caught:
        load_scenario(tiny_digits(task={"model": model}))
    assert key in str(caught.value)


@pytest.mark.parametrize(
    "model",
    [{"activation": "selu", "alpha_dropout": 0.1}, {"norm": "batch"}, {"norm": "group", "groups": 4}],
    ids=["selu-dropout", "batch", "group"],
)
def test_runs_are_deterministic(tmp_path, model):
    raw = tiny_digits(task={"model": model}, eval={"every": 2})
    first = flsim.run(raw, run_dir=tmp_path / "a")
    second = flsim.run(raw, run_dir=tmp_path / "b")
    rows = metrics_without_wall_time(first.run_dir)
    assert rows == metrics_without_wall_time(second.run_dir)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]


def test_a_dropout_run_resumes_bit_identically(tmp_path):
    from flsim.engine.simulation import RoundSimulation
    from tests.builders import run_until_crash

    raw = tiny_digits(
        task={"model": {"activation": "selu", "alpha_dropout": 0.1}}, rounds=6, checkpoint={"every": 2}
    )
    full = flsim.run(raw, run_dir=tmp_path / "full")
    run_until_crash(raw, tmp_path / "crashed", RoundSimulation, 3)
    resumed = flsim.resume(tmp_path / "crashed")
    assert metrics_without_wall_time(resumed.run_dir) == metrics_without_wall_time(full.run_dir)
