"""Study 7: Flow-GRPO against TempFlow-GRPO, as RL fine-tuning of a 2-D rectified flow.

Flow-GRPO (Liu et al. 2025, arXiv:2505.05470) turns a flow model's deterministic sampler into a
policy: the Euler step of the ODE dx = v dt is replaced by an SDE step with the same marginals,
x_{t+Δt} = x_t + [v + σ_t²/(2t)·(x_t + (1 − t)v)]Δt + σ_t√|Δt|·ε, σ_t = a√(t/(1 − t)),
(time runs from t = 1, noise, to t = 0, data; x_t = (1 − t)x₀ + tε, v ≈ ε − x₀), so every step is a
Gaussian action with a tractable log-probability. G trajectories share a "prompt", their terminal
rewards are z-scored within the group (the GRPO advantage), and a PPO-clip loss plus a KL penalty to
the frozen base model is applied at every step with the same weight. The SDE form and the σ_t
schedule follow the official code (github yifan123/flow_grpo, ``sd3_sde_with_logprob.py``: the
std is a√(t/(1 − t)) with t = 1 replaced by the next grid point, the step std is σ_t√|Δt|,
a = 0.7 is its default ``noise_level``). One difference: the official log-probability is averaged
over the image's coordinates; here it is the exact Gaussian log-density, summed over the two.

TempFlow-GRPO (He et al. 2025, arXiv:2508.04324, "When timing matters for GRPO in flow models")
adds, as its abstract states, (i) **trajectory branching**: a group starts from one shared noise
(the paper's seed group), follows the ODE to a branching step k, takes the SDE step there only,
with G independent noises, and follows the ODE again to the end, so the reward differences within
the group are caused by step k alone and the loss is applied to step k only; and (ii) a
**noise-aware weighting** that scales each step's policy loss by its exploration magnitude,
"prioritising learning during high-impact early stages". We implement the weight as
w_k = σ_k√|Δt| / mean_j(σ_j√|Δt|) (mean 1 over the T steps). The project's study list gives this
form as a paraphrase; the paper's abstract and project page confirm only that the weight is set
by the step's noise level σ_t√Δt and decreases along the trajectory, not the exact normalisation
(the paper's section 3 and code were not readable through our search tool). It is therefore
*kept as the paraphrase*, not confirmed to the letter. Branch steps are drawn uniformly at
random, one per group.

Setup (the study list): a rectified-flow MLP pre-trained on 8 Gaussians (radius 2, std 0.1) and
sampled with T = 10 Euler steps; reward r(x) = exp(−‖x − c‖²/0.5) for the mode c = (2, 0); G = 16;
KL coefficient ``kl_weight`` to the base model (per step, closed form for two Gaussians of the
same std: ‖μ_θ − μ_ref‖²/(2 std²)). One group (16 trajectories) per iteration for both methods,
so the x-axis "trajectories" is an equal budget. Progress is measured with the deterministic ODE
sampler on a fixed set of evaluation noises.

Gates (exact mechanics, fail the study): zero-noise SDE sampling is the ODE and is deterministic;
the branched objective's gradient with respect to the policy outputs at every non-branched step
is exactly zero (and nonzero at the branched step). Claims (reported only, ``gate=False``):
trajectories to reach mean reward 0.8, TempFlow ≤ 0.67× Flow-GRPO (a method that never gets
there is charged the budget plus one evaluation interval, an explicit upper bound); and the
sample spread of TempFlow ≥ 0.5× the base model's. "Spread" here is the RMS distance of the
samples that fall in the rewarded mode's basin (‖x − c‖ < 1) to their mean — the within-mode
diversity that reward over-optimisation collapses — because the base model's spread over all
eight modes cannot be kept by any policy that moves its mass to one mode, which is the task.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
from pydantic import Field
from threadpoolctl import threadpool_limits
from torch import nn

from flsim.studies import (
    FigureSpec,
    StudyContext,
    StudyOutcome,
    StudyParams,
    at_least,
    at_most,
    register_study,
)

#: 8 Gaussians on a circle of this radius with this std; the rewarded mode; reward width (list).
RADIUS, MODE_STD, TARGET, REWARD_WIDTH = 2.0, 0.1, (2.0, 0.0), 0.5
#: The claims' thresholds (the study list): reward level, trajectory ratio, spread ratio.
REWARD_LEVEL, TRAJECTORY_RATIO, SPREAD_RATIO = 0.8, 0.67, 0.5
BASIN = 1.0  # radius of the rewarded mode's basin for the spread measure
METHODS = ("flow_grpo", "tempflow_grpo")


class TempFlowParams(StudyParams):
    seeds: list[Annotated[int, Field(ge=0)]] = Field(default=[0], min_length=1)
    steps: int = Field(10, ge=2, le=100)
    group: int = Field(16, ge=2, le=256)
    iterations: int = Field(300, ge=1, le=5000)
    pretrain_steps: int = Field(3000, ge=1, le=50000)
    noise_level: float = Field(0.7, gt=0.0, le=2.0)
    kl_weight: float = Field(0.04, ge=0.0, le=10.0)
    clip: float = Field(0.2, gt=0.0, le=1.0)
    inner_epochs: int = Field(2, ge=1, le=10)
    learning_rate: float = Field(3e-4, gt=0.0, le=1.0)
    eval_every: int = Field(5, ge=1)
    eval_samples: int = Field(512, ge=16, le=20000)


# -- the flow model ---------------------------------------------------------------------------------
class VelocityNet(nn.Module):
    """v(x, t): an MLP on (x, t) with SiLU activations."""

    def __init__(self, generator: torch.Generator, width: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(3, width),
            nn.SiLU(),
            nn.Linear(width, width),
            nn.SiLU(),
            nn.Linear(width, width),
            nn.SiLU(),
            nn.Linear(width, 2),
        )
        with torch.no_grad():
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    bound = 1 / math.sqrt(layer.in_features)
                    layer.weight.uniform_(-bound, bound, generator=generator)
                    layer.bias.uniform_(-bound, bound, generator=generator)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, t.expand(x.shape[0], 1)], -1))


def eight_gaussians(n: int, generator: torch.Generator) -> torch.Tensor:
    angle = torch.randint(0, 8, (n,), generator=generator) * (2 * math.pi / 8)
    centres = RADIUS * torch.stack([torch.cos(angle), torch.sin(angle)], -1)
    return centres + MODE_STD * torch.randn(n, 2, generator=generator)


def pretrain(steps: int, generator: torch.Generator) -> VelocityNet:
    """Rectified flow: regress v on ε − x₀ at x_t = (1 − t)x₀ + tε, t ~ U(0, 1), Adam, batch 256."""
    model = VelocityNet(generator)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        x0, eps = eight_gaussians(256, generator), torch.randn(256, 2, generator=generator)
        t = torch.rand(256, 1, generator=generator)
        loss = ((model.net(torch.cat([(1 - t) * x0 + t * eps, t], -1)) - (eps - x0)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model


def reward(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(-((x - torch.tensor(TARGET)) ** 2).sum(-1) / REWARD_WIDTH)


# -- the sampler as a policy --------------------------------------------------------------------------
def time_grid(steps: int) -> torch.Tensor:
    return torch.linspace(1.0, 0.0, steps + 1)


def step_std(steps: int, noise_level: float) -> torch.Tensor:
    """σ_t√|Δt| per step, σ_t = a√(t/(1 − t)) with t = 1 replaced by the next grid point (Flow-GRPO)."""
    t = time_grid(steps)[:-1]
    one_minus = torch.where(t == 1.0, 1 - t[1], 1 - t)
    return noise_level * torch.sqrt(t / one_minus) * math.sqrt(1.0 / steps)


def noise_aware_weights(steps: int, noise_level: float) -> torch.Tensor:
    """w_k ∝ σ_k√|Δt|, normalised to mean 1 over the steps."""
    std = step_std(steps, noise_level)
    return std / std.mean()


def sde_mean(x: torch.Tensor, v: torch.Tensor, t: float, dt: float, std: float) -> torch.Tensor:
    """Mean of Flow-GRPO's SDE step (dt < 0): x + [v + σ²/(2t)(x + (1 − t)v)]dt, σ² = std²/|dt|."""
    sigma2 = std**2 / abs(dt)
    return x + (v + sigma2 / (2 * t) * (x + (1 - t) * v)) * dt


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    return (-((x - mean) ** 2) / (2 * std**2) - math.log(std) - 0.5 * math.log(2 * math.pi)).sum(-1)


@dataclass
class Rollout:
    """States x_0..x_T (T + 1, n, 2), old log-probs (T, n) and which steps carry the loss (T, n)."""

    states: torch.Tensor
    old_log_probs: torch.Tensor
    mask: torch.Tensor
    rewards: torch.Tensor


@torch.no_grad()
def rollout(
    model: VelocityNet, x1: torch.Tensor, std: torch.Tensor, noisy: torch.Tensor, generator: torch.Generator
) -> Rollout:
    """Sample from x1; step k is an SDE step where ``noisy[k]`` is True, an ODE (Euler) step otherwise."""
    t, steps = time_grid(len(std)), len(std)
    states, log_probs, x = [x1], [], x1
    for k in range(steps):
        dt = float(t[k + 1] - t[k])
        v = model(x, t[k].reshape(1, 1))
        if noisy[k]:
            mean = sde_mean(x, v, float(t[k]), dt, float(std[k]))
            x = mean + std[k] * torch.randn(x.shape, generator=generator)
            log_probs.append(gaussian_log_prob(x, mean, float(std[k])) if std[k] > 0 else torch.zeros(len(x)))
        else:
            x = x + v * dt
            log_probs.append(torch.zeros(x.shape[0]))
        states.append(x)
    mask = noisy[:, None].expand(steps, x1.shape[0]).float()
    return Rollout(torch.stack(states), torch.stack(log_probs), mask, reward(x))


def policy_outputs(model: VelocityNet, states: torch.Tensor) -> torch.Tensor:
    """v_θ at every visited state, (T, n, 2), with gradients."""
    t = time_grid(states.shape[0] - 1)
    return torch.stack([model(states[k], t[k].reshape(1, 1)) for k in range(states.shape[0] - 1)])


def grpo_loss(
    v: torch.Tensor,
    v_ref: torch.Tensor,
    batch: Rollout,
    advantages: torch.Tensor,
    weights: torch.Tensor,
    std: torch.Tensor,
    clip: float,
    kl_weight: float,
) -> torch.Tensor:
    """Σ_k w_k·mask_k·mean_i[PPO-clip_k,i + β·KL_k,i] / Σ_k mask_k: the loss of both methods.

    Only steps with mask 1 enter, so with a one-step mask (a branch) the gradient with respect
    to the policy outputs at every other step is exactly zero.
    """
    t = time_grid(len(std))
    total, count = v.new_zeros(()), batch.mask[:, 0].sum()
    for k in range(len(std)):
        if batch.mask[k, 0] == 0:
            continue
        dt, s = float(t[k + 1] - t[k]), float(std[k])
        mean = sde_mean(batch.states[k], v[k], float(t[k]), dt, s)
        ref_mean = sde_mean(batch.states[k], v_ref[k], float(t[k]), dt, s)
        ratio = torch.exp(gaussian_log_prob(batch.states[k + 1], mean, s) - batch.old_log_probs[k])
        ppo = -torch.minimum(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages)
        kl = ((mean - ref_mean) ** 2).sum(-1) / (2 * s**2)
        total = total + weights[k] * (ppo + kl_weight * kl).mean()
    return total / count


# -- fine-tuning --------------------------------------------------------------------------------------
@torch.no_grad()
def ode_samples(model: VelocityNet, x: torch.Tensor, steps: int = 10) -> torch.Tensor:
    """The deterministic sampler: T Euler steps of the ODE."""
    t = time_grid(steps)
    for k in range(steps):
        x = x + model(x, t[k].reshape(1, 1)) * float(t[k + 1] - t[k])
    return x


def collect(
    method: str, model: VelocityNet, params: TempFlowParams, std: torch.Tensor, generator: torch.Generator
) -> Rollout:
    """One group: G independent SDE trajectories (Flow-GRPO) or G branches at one random step (TempFlow)."""
    if method == "flow_grpo":
        x1 = torch.randn(params.group, 2, generator=generator)
        return rollout(model, x1, std, torch.ones(params.steps, dtype=torch.bool), generator)
    x1 = torch.randn(1, 2, generator=generator).expand(params.group, 2).contiguous()  # the seed group
    noisy = torch.zeros(params.steps, dtype=torch.bool)
    noisy[int(torch.randint(0, params.steps, (1,), generator=generator))] = True
    return rollout(model, x1, std, noisy, generator)


def spread(x: torch.Tensor) -> float:
    """RMS distance to their mean of the samples within BASIN of the rewarded mode (nan if < 2)."""
    inside = x[((x - torch.tensor(TARGET)) ** 2).sum(-1) < BASIN**2]
    if len(inside) < 2:
        return float("nan")
    return float(((inside - inside.mean(0)) ** 2).sum(-1).mean().sqrt())


def fine_tune(
    method: str,
    base: VelocityNet,
    params: TempFlowParams,
    ctx: StudyContext,
    seed: int,
    eval_noise: torch.Tensor,
) -> dict[str, float]:
    model = copy.deepcopy(base)
    opt = torch.optim.Adam(model.parameters(), lr=params.learning_rate)
    std = step_std(params.steps, params.noise_level)
    weights = (
        noise_aware_weights(params.steps, params.noise_level)
        if method == "tempflow_grpo"
        else torch.ones(params.steps)
    )
    generator = ctx.torch_generator("rollouts", METHODS.index(method))
    reached = params.iterations * params.group + params.eval_every * params.group  # explicit upper bound
    for it in range(1, params.iterations + 1):
        batch = collect(method, model, params, std, generator)
        advantages = (batch.rewards - batch.rewards.mean()) / (batch.rewards.std() + 1e-4)
        with torch.no_grad():
            v_ref = policy_outputs(base, batch.states)
        for _ in range(params.inner_epochs):
            loss = grpo_loss(
                policy_outputs(model, batch.states),
                v_ref,
                batch,
                advantages,
                weights,
                std,
                params.clip,
                params.kl_weight,
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
        if it % params.eval_every == 0 or it == params.iterations:
            mean_reward = float(reward(ode_samples(model, eval_noise, params.steps)).mean())
            trajectories = it * params.group
            if mean_reward >= REWARD_LEVEL and trajectories < reached:
                reached = trajectories
            ctx.record(
                {
                    "seed": seed,
                    "method": method,
                    "iteration": it,
                    "trajectories": trajectories,
                    "mean_reward": mean_reward,
                }
            )
    with torch.no_grad():
        final = ode_samples(model, eval_noise, params.steps)
    return {
        "trajectories_to_level": float(reached),
        "final_mean_reward": float(reward(final).mean()),
        "spread": spread(final),
    }


@register_study(
    "tempflow_grpo",
    params=TempFlowParams,
    paper="Liu et al., Flow-GRPO: training flow matching models via online RL, 2025; He et al., "
    "TempFlow-GRPO: when timing matters for GRPO in flow models, 2025",
    claim="fine-tuning a 2-D rectified flow (8 Gaussians, T = 10) toward one mode, TempFlow-GRPO's branching "
    "and noise-aware weights reach mean reward 0.8 in ≤ 0.67× Flow-GRPO's trajectories, keeping ≥ 0.5× the "
    "base model's within-mode spread; gates: zero-noise sampling is the deterministic ODE, branch credit "
    "reaches only the branched step",
    figures=(
        FigureSpec(
            "8 Gaussians: mean reward (ODE samples) vs trajectories",
            "trajectories",
            ("mean_reward",),
            series="method",
        ),
    ),
    number=7,
)
def run_tempflow_grpo(params: TempFlowParams, context: StudyContext) -> StudyOutcome:
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    with threadpool_limits(1):
        base = pretrain(params.pretrain_steps, context.torch_generator("pretrain"))
        eval_noise = torch.randn(params.eval_samples, 2, generator=context.torch_generator("eval"))
        with torch.no_grad():
            base_samples = ode_samples(base, eval_noise, params.steps)
        gates = mechanics_gates(base, params, context)
        runs = {
            (s, m): fine_tune(m, base, params, context.with_seed(s), s, eval_noise)
            for s in params.seeds
            for m in METHODS
        }
    keys = runs[params.seeds[0], METHODS[0]]
    med = {
        m: {key: float(np.median([runs[s, m][key] for s in params.seeds])) for key in keys} for m in METHODS
    }
    base_spread = spread(base_samples)
    traj_ratio = med["tempflow_grpo"]["trajectories_to_level"] / med["flow_grpo"]["trajectories_to_level"]
    spread_ratio = med["tempflow_grpo"]["spread"] / base_spread
    return StudyOutcome(
        criteria={
            "zero_noise_sampling_max_deviation": at_most(gates["zero_noise_deviation"], 0.0),
            "branch_gradient_off_branch_max": at_most(gates["off_branch_gradient"], 0.0),
            "branch_gradient_on_branch_min": at_least(gates["on_branch_gradient"], 1e-12),
            "trajectories_tempflow_over_flow_grpo": at_most(traj_ratio, TRAJECTORY_RATIO, gate=False),
            "spread_tempflow_over_base": at_least(spread_ratio, SPREAD_RATIO, gate=False),
        },
        results={
            "medians": med,
            "base": {"mean_reward": float(reward(base_samples).mean()), "spread": base_spread},
            "per_seed": {f"{m}_seed{s}": runs[s, m] for s in params.seeds for m in METHODS},
            "spread_flow_grpo_over_base": med["flow_grpo"]["spread"] / base_spread,
            "noise_aware_weights": noise_aware_weights(params.steps, params.noise_level).tolist(),
            "wall_seconds": time.perf_counter() - start_wall,
            "cpu_seconds": time.process_time() - start_cpu,
        },
    )


def mechanics_gates(base: VelocityNet, params: TempFlowParams, context: StudyContext) -> dict[str, float]:
    """The gates on the study's own model: zero-noise determinism and the branch's gradient support."""
    zero, every = torch.zeros(params.steps), torch.ones(params.steps, dtype=torch.bool)
    x1 = torch.randn(64, 2, generator=context.torch_generator("gates"))
    a = rollout(base, x1, zero, every, context.torch_generator("gates", 1))
    b = rollout(base, x1, zero, every, context.torch_generator("gates", 2))
    ode = ode_samples(base, x1, params.steps)
    deviation = max(float((a.states[-1] - b.states[-1]).abs().max()), float((a.states[-1] - ode).abs().max()))
    off, on = branch_gradient_support(base, params, params.steps // 2, context.torch_generator("gates", 3))
    return {"zero_noise_deviation": deviation, "off_branch_gradient": off, "on_branch_gradient": on}


def branch_gradient_support(
    model: VelocityNet, params: TempFlowParams, branch: int, generator: torch.Generator
) -> tuple[float, float]:
    """max |∂L/∂v_j| over the non-branched steps j, and ‖∂L/∂v_branch‖, for one branched group."""
    std = step_std(params.steps, params.noise_level)
    noisy = torch.zeros(params.steps, dtype=torch.bool)
    noisy[branch] = True
    x1 = torch.randn(1, 2, generator=generator).expand(params.group, 2).contiguous()
    batch = rollout(model, x1, std, noisy, generator)
    advantages = (batch.rewards - batch.rewards.mean()) / (batch.rewards.std() + 1e-4)
    v = policy_outputs(model, batch.states).detach().requires_grad_(True)
    v_ref = v.detach() + 0.01  # a base that differs, so the KL term has a gradient too
    weights = noise_aware_weights(params.steps, params.noise_level)
    loss = grpo_loss(v, v_ref, batch, advantages, weights, std, params.clip, params.kl_weight)
    (grad,) = torch.autograd.grad(loss, v)
    off = torch.cat([grad[:branch], grad[branch + 1 :]]).abs().max()
    return float(off), float(grad[branch].norm())
