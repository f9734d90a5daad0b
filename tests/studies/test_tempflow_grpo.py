"""Study 7 (Flow-GRPO vs TempFlow-GRPO): the gates, and the SDE sampler against a closed form.

* Zero noise: an SDE step with σ = 0 is exactly the Euler step of the ODE, so zero-noise sampling
  is deterministic (two different noise generators give bit-identical samples).
* Branch credit: the branched objective's gradient with respect to the policy outputs v_j is
  exactly zero at every step j other than the branch, for every branch position, and nonzero at
  the branch; the all-steps (Flow-GRPO) objective has nonzero gradient at every step, so the
  check can fail.
* The SDE keeps the ODE's marginals: for Gaussian data N(m, s²I) the exact velocity field is
  known in closed form (E[ε − x₀ | x_t]), and SDE sampling with it ends at mean m, variance s²;
  the same step without Flow-GRPO's drift correction σ²/(2t)(x + (1 − t)v) does not.
* The noise-aware weights are ∝ σ_k√|Δt| with mean 1, and decrease along the trajectory.
"""

from __future__ import annotations

import json

import pytest
import torch

import flsim
from flsim.config.errors import ConfigErrors
from flsim.studies import tempflow_grpo as tf
from flsim.studies.tempflow_grpo import (
    VelocityNet,
    grpo_loss,
    noise_aware_weights,
    ode_samples,
    policy_outputs,
    rollout,
    sde_mean,
    step_std,
)

SCENARIO = "scenarios/studies/tempflow_grpo.yaml"


def _net() -> VelocityNet:
    return VelocityNet(torch.Generator().manual_seed(0))


def test_zero_noise_sde_step_is_the_euler_step_and_sampling_is_deterministic():
    x, v = torch.randn(32, 2), torch.randn(32, 2)
    assert torch.equal(sde_mean(x, v, 0.7, -0.1, 0.0), x + v * -0.1)
    model, x1, steps = _net(), torch.randn(64, 2), 10
    every = torch.ones(steps, dtype=torch.bool)
    a = rollout(model, x1, torch.zeros(steps), every, torch.Generator().manual_seed(1))
    b = rollout(model, x1, torch.zeros(steps), every, torch.Generator().manual_seed(2))
    assert torch.equal(a.states, b.states)
    assert torch.equal(a.states[-1], ode_samples(model, x1, steps))
    noisy = rollout(model, x1, step_std(steps, 0.7), every, torch.Generator().manual_seed(1))
    assert not torch.equal(noisy.states[-1], a.states[-1])


def _branch_grad(model: VelocityNet, noisy: torch.Tensor, steps: int = 10) -> torch.Tensor:
    std = step_std(steps, 0.7)
    x1 = torch.randn(1, 2).expand(16, 2).contiguous()
    batch = rollout(model, x1, std, noisy, torch.Generator().manual_seed(5))
    adv = (batch.rewards - batch.rewards.mean()) / (batch.rewards.std() + 1e-4)
    v = policy_outputs(model, batch.states).detach().requires_grad_(True)
    loss = grpo_loss(v, v.detach() + 0.01, batch, adv, noise_aware_weights(steps, 0.7), std, 0.2, 0.04)
    return torch.autograd.grad(loss, v)[0]


@pytest.mark.parametrize("branch", range(10))
def test_branch_credit_reaches_only_the_branched_step(branch):
    noisy = torch.zeros(10, dtype=torch.bool)
    noisy[branch] = True
    grad = _branch_grad(_net(), noisy)
    others = torch.cat([grad[:branch], grad[branch + 1 :]])
    assert torch.count_nonzero(others) == 0
    assert float(grad[branch].norm()) > 0


def test_the_all_steps_objective_reaches_every_step():
    grad = _branch_grad(_net(), torch.ones(10, dtype=torch.bool))
    assert all(float(grad[k].norm()) > 0 for k in range(10))


class GaussianVelocity:
    """Exact rectified-flow velocity for data N(m, s²I): E[ε − x₀ | x_t], x_t = (1 − t)x₀ + tε."""

    def __init__(self, mean: torch.Tensor, std: float) -> None:
        self.mean, self.var = mean, std**2

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = float(t)
        total = (1 - t) ** 2 * self.var + t**2
        centred = x - (1 - t) * self.mean
        return t / total * centred - (self.mean + (1 - t) * self.var / total * centred)


def _terminal(model, steps: int, n: int = 40_000) -> torch.Tensor:
    x1 = torch.randn(n, 2, generator=torch.Generator().manual_seed(7))
    every = torch.ones(steps, dtype=torch.bool)
    return rollout(model, x1, step_std(steps, 0.7), every, torch.Generator().manual_seed(8)).states[-1]


def test_sde_sampling_keeps_the_ode_marginal_of_gaussian_data(monkeypatch):
    mean, std = torch.tensor([1.0, -0.5]), 0.3
    model = GaussianVelocity(mean, std)
    x = _terminal(model, steps=200)
    assert torch.allclose(x.mean(0), mean, atol=0.02)
    assert torch.allclose(x.var(0), torch.full((2,), std**2), rtol=0.08)
    ode = ode_samples(model, torch.randn(40_000, 2, generator=torch.Generator().manual_seed(7)), 200)
    assert torch.allclose(ode.var(0), torch.full((2,), std**2), rtol=0.08)
    monkeypatch.setattr(tf, "sde_mean", lambda x, v, t, dt, s: x + v * dt)  # no drift correction
    wrong = _terminal(model, steps=200)
    assert float(wrong.var(0).min()) > 1.5 * std**2


def test_noise_aware_weights_follow_the_step_noise():
    w, std = noise_aware_weights(10, 0.7), step_std(10, 0.7)
    assert float(w.mean()) == pytest.approx(1.0)
    assert torch.allclose(w / std, (w / std)[0].expand(10))
    assert bool((w[1:] <= w[:-1]).all())


def test_a_reduced_run_records_curves_and_passes_its_gates(tmp_path):
    overrides = ["study.seeds=[0]", "study.iterations=4", "study.pretrain_steps=50", "study.eval_every=2"]
    result = flsim.run(SCENARIO, overrides, run_dir=tmp_path / "run")
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["pass"] is True
    assert summary["criteria"]["branch_gradient_off_branch_max"]["value"] == 0.0
    assert summary["criteria"]["trajectories_tempflow_over_flow_grpo"]["gate"] is False
    frame = flsim.load_runs(result.run_dir)
    assert sorted(frame["method"].unique()) == ["flow_grpo", "tempflow_grpo"]
    assert list(frame[frame["method"] == "flow_grpo"]["trajectories"]) == [32, 64]


@pytest.mark.parametrize(("key", "value"), [("group", 1), ("clip", 0), ("iterations", 0), ("grup", 16)])
def test_a_malformed_study_parameter_names_its_key(key, value):
    with pytest.raises(ConfigErrors, match=rf"study\.{key}"):
        flsim.run(SCENARIO, [f"study.{key}={value}"])
