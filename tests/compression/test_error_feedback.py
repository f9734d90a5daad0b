"""Identities of docs/algorithms.md section E for the kernels (E1–E5) and the uplink channel."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from flsim.compression import (
    ClientChannelState,
    Compressor,
    Identity,
    MirrorState,
    RandK,
    ScaledSign,
    ScaledToContractive,
    ServerChannelState,
    TopK,
    UplinkChannel,
    compressed_sgd_step,
    econtrol_init,
    econtrol_step,
    ef14_init,
    ef14_step,
    ef21_init,
    ef21_step,
)
from flsim.rng import torch_rng
from tests.compression.least_squares import LeastSquares

STEPS = 60
GAMMA = 0.1


def x0_of(problem: LeastSquares) -> Tensor:
    return torch.zeros(problem.d, dtype=torch.float64)


def assert_machine_close(a: Tensor, b: Tensor, scale: float = 1.0) -> None:
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12 * scale)


# ---------------------------------------------------------------- (a) identity compressor = GD
@pytest.mark.parametrize("eta", [0.0, 0.05, 0.5, 1.0])
def test_econtrol_with_identity_is_gradient_descent(least_squares: LeastSquares, eta: float) -> None:
    p = least_squares
    x = y = x0_of(p)
    state, _ = econtrol_init(x, p.grad, p.n)
    for _ in range(STEPS):
        x, state, _ = econtrol_step(x, state, p.grad, GAMMA, eta, Identity())
        y = y - GAMMA * p.full_grad(y)
        assert all(torch.count_nonzero(e) == 0 for e in state.e)  # the error never builds up
        assert_machine_close(x, y, scale=float(y.abs().max()))


# ---------------------------------------------------------------- (b) virtual iterate
@pytest.mark.parametrize("eta", [0.0, 0.05, 1.0])
@pytest.mark.parametrize("compressor", [TopK(k=1), TopK(k=4), ScaledSign()], ids=repr)
def test_econtrol_virtual_iterate_moves_along_true_gradient(
    least_squares: LeastSquares, eta: float, compressor: Compressor
) -> None:
    """From E1/E2: with x̃_t = x_t − γ ē_t (ē = mean e_i), x̃_{t+1} = x̃_t − γ ḡ(x_t) for every η and C.

    E2 moves x by −γ(h + Δ̄); E1 moves ē by ḡ − h − Δ̄; the h and Δ̄ terms cancel. The gradients are
    taken at the *real* iterate x_t.
    """
    p = least_squares
    x = x0_of(p)
    state, _ = econtrol_init(x, p.grad, p.n)
    for _ in range(STEPS):
        virtual = x - GAMMA * torch.stack(state.e).mean(0)
        expected = virtual - GAMMA * p.full_grad(x)
        x, state, _ = econtrol_step(x, state, p.grad, GAMMA, eta, compressor)
        assert_machine_close(
            x - GAMMA * torch.stack(state.e).mean(0), expected, scale=float(expected.abs().max())
        )


def test_ef14_virtual_iterate_moves_along_true_gradient(least_squares: LeastSquares) -> None:
    """E3: x̃ = x − ē satisfies x̃_{t+1} = x̃_t − γ ḡ(x_t) (the classic EF identity)."""
    p = least_squares
    x = x0_of(p)
    state = ef14_init(x, p.n)
    for _ in range(STEPS):
        expected = x - torch.stack(state.e).mean(0) - GAMMA * p.full_grad(x)
        x, state, _ = ef14_step(x, state, p.grad, GAMMA, TopK(k=1))
        assert_machine_close(x - torch.stack(state.e).mean(0), expected, scale=float(expected.abs().max()))


# ---------------------------------------------------------------- (c) η = 0 is EF21
@pytest.mark.parametrize("compressor", [TopK(k=1), ScaledSign()], ids=repr)
def test_econtrol_with_eta_zero_is_ef21_bit_for_bit(
    least_squares: LeastSquares, compressor: Compressor
) -> None:
    p = least_squares
    x = y = x0_of(p)
    ec, _ = econtrol_init(x, p.grad, p.n)
    ef, _ = ef21_init(y, p.grad, p.n)
    for _ in range(STEPS):
        previous_g = ef.g
        x, ec, _ = econtrol_step(x, ec, p.grad, GAMMA, 0.0, compressor)
        y, ef, _ = ef21_step(y, ef, p.grad, GAMMA, compressor)
        assert torch.equal(x, y)
        # E4 compresses at the new iterate, E1 at the current one: EControl's h_i lags EF21's g_i by a step
        assert all(torch.equal(h, g) for h, g in zip(ec.h, previous_g, strict=True))


def test_eta_matters_when_compression_is_lossy(least_squares: LeastSquares) -> None:
    p = least_squares
    runs = []
    for eta in (0.0, 0.5):
        x = x0_of(p)
        state, _ = econtrol_init(x, p.grad, p.n)
        for _ in range(5):
            x, state, _ = econtrol_step(x, state, p.grad, GAMMA, eta, TopK(k=1))
        runs.append(x)
    assert not torch.equal(runs[0], runs[1])


# ---------------------------------------------------------------- EF14 recursion, E3 by hand
def test_ef14_matches_its_recursion(least_squares: LeastSquares) -> None:
    p = least_squares
    x = y = x0_of(p)
    state = ef14_init(x, p.n)
    e = [torch.zeros_like(x) for _ in range(p.n)]
    for _ in range(20):
        x, state, nbytes = ef14_step(x, state, p.grad, GAMMA, TopK(k=2))
        deltas = []
        for i in range(p.n):
            pi = GAMMA * p.grad(i, y) + e[i]
            top = torch.zeros_like(pi)
            idx = torch.argsort(pi.abs(), descending=True, stable=True)[:2]
            top[idx] = pi[idx]
            e[i] = pi - top
            deltas.append(top)
        y = y - sum(deltas) / p.n
        assert_machine_close(x, y, scale=float(y.abs().max()))
        assert nbytes == p.n * 2 * (8 + 1)


# ---------------------------------------------------------------- byte accounting of the kernels
def test_kernel_bytes(least_squares: LeastSquares) -> None:
    p = least_squares
    x = x0_of(p)
    ec, init_bytes = econtrol_init(x, p.grad, p.n)
    assert init_bytes == p.n * p.d * 8
    _, _, step_bytes = econtrol_step(x, ec, p.grad, GAMMA, 0.1, TopK(k=1))
    assert step_bytes == p.n * (8 + 1)
    _, init21 = ef21_init(x, p.grad, p.n)
    assert init21 == init_bytes
    _, sgd_bytes = compressed_sgd_step(x, p.n, p.grad, GAMMA, ScaledSign())
    assert sgd_bytes == p.n * (8 + 3)


# ---------------------------------------------------------------- the channel reproduces the kernels
def channel_descent(
    problem: LeastSquares,
    channel: UplinkChannel,
    steps: int,
    scale_by_gamma: bool = False,
    seed: int | None = None,
) -> list[Tensor]:
    """Gradient descent whose uplink message (∇f_i, or γ∇f_i for EF14) travels through ``channel``."""
    x = x0_of(problem)
    clients = [ClientChannelState() for _ in range(problem.n)]
    mirrors = [MirrorState() for _ in range(problem.n)]
    server = ServerChannelState()
    iterates = []
    for t in range(steps):
        messages, reconstructed = [], []
        for i in range(problem.n):
            v = problem.grad(i, x)
            v = GAMMA * v if scale_by_gamma else v
            generator = None if seed is None else torch_rng(seed, "compression", i, t)
            msg, clients[i] = channel.encode(v, clients[i], generator)
            value, mirrors[i] = channel.decode(msg, mirrors[i])
            messages.append(msg)
            reconstructed.append(value)
            if channel.mirrored:
                assert torch.equal(mirrors[i].shift, clients[i].shift)  # type: ignore[arg-type]
        estimate, server = channel.aggregate(messages, server, problem.n)
        assert_machine_close(estimate, torch.stack(reconstructed).mean(0), scale=float(estimate.abs().max()))
        step = estimate if scale_by_gamma else GAMMA * estimate
        x = x - step
        iterates.append(x)
    return iterates


@pytest.mark.parametrize("eta", [0.0, 0.3])
def test_econtrol_channel_equals_kernel(least_squares: LeastSquares, eta: float) -> None:
    p = least_squares
    via_channel = channel_descent(p, UplinkChannel(TopK(k=1), "econtrol", eta), 30)
    x = x0_of(p)
    state, _ = econtrol_init(x, p.grad, p.n)
    for t in range(30):
        x, state, _ = econtrol_step(x, state, p.grad, GAMMA, eta, TopK(k=1))
        assert_machine_close(via_channel[t], x, scale=float(x.abs().max()))


def test_ef21_channel_equals_kernel(least_squares: LeastSquares) -> None:
    p = least_squares
    via_channel = channel_descent(p, UplinkChannel(TopK(k=1), "ef21"), 30)
    x = x0_of(p)
    state, _ = ef21_init(x, p.grad, p.n)
    for t in range(30):
        x, state, _ = ef21_step(x, state, p.grad, GAMMA, TopK(k=1))
        assert_machine_close(via_channel[t], x, scale=float(x.abs().max()))


def test_ef14_channel_equals_kernel(least_squares: LeastSquares) -> None:
    p = least_squares
    via_channel = channel_descent(p, UplinkChannel(TopK(k=1), "ef14"), 30, scale_by_gamma=True)
    x = x0_of(p)
    state = ef14_init(x, p.n)
    for t in range(30):
        x, state, _ = ef14_step(x, state, p.grad, GAMMA, TopK(k=1))
        assert_machine_close(via_channel[t], x, scale=float(x.abs().max()))


def test_plain_channel_equals_compressed_sgd_with_seeded_generators(least_squares: LeastSquares) -> None:
    p = least_squares
    compressor = RandK(k=3)
    via_channel = channel_descent(p, UplinkChannel(compressor, "none"), 20, seed=4)
    x = x0_of(p)
    for t in range(20):
        gens = [torch_rng(4, "compression", i, t) for i in range(p.n)]
        x, _ = compressed_sgd_step(x, p.n, p.grad, GAMMA, compressor, gens)
        assert_machine_close(via_channel[t], x, scale=float(x.abs().max()))


def test_channel_is_deterministic_with_stochastic_compressor(least_squares: LeastSquares) -> None:
    channel = UplinkChannel(ScaledToContractive(RandK(k=2)), "econtrol")
    a = channel_descent(least_squares, channel, 10, seed=1)
    b = channel_descent(least_squares, channel, 10, seed=1)
    c = channel_descent(least_squares, channel, 10, seed=2)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[-1], c[-1])


# ---------------------------------------------------------------- channel mechanics
def test_first_message_is_uncompressed_reset_then_compressed() -> None:
    v = torch.tensor([1.0, -2.0, 3.0, 0.5], dtype=torch.float32)
    for kind in ("ef21", "econtrol"):
        channel = UplinkChannel(TopK(k=1), kind)  # type: ignore[arg-type]
        msg, state = channel.encode(v, ClientChannelState(), None)
        assert msg.reset and msg.nbytes == 4 * 4 and torch.equal(msg.value, v)
        assert torch.equal(state.shift, v)  # type: ignore[arg-type]
        if kind == "econtrol":
            assert torch.equal(state.error, torch.zeros(4))  # type: ignore[arg-type]
        value, mirror = channel.decode(msg, MirrorState())
        assert torch.equal(value, v) and torch.equal(mirror.shift, v)  # type: ignore[arg-type]
        msg2, _ = channel.encode(2 * v, state, None)
        assert not msg2.reset and msg2.nbytes == 1 * (4 + 1)
        assert torch.equal(msg2.value, torch.tensor([0.0, 0.0, 3.0, 0.0]))
        with pytest.raises(ValueError, match="reset"):
            channel.decode(msg2, MirrorState())


def test_ef14_channel_first_call_and_error() -> None:
    channel = UplinkChannel(TopK(k=1), "ef14")
    v = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    msg, state = channel.encode(v, ClientChannelState(), None)
    assert not msg.reset and msg.nbytes == 8 + 1
    assert torch.equal(state.error, torch.tensor([1.0, -2.0, 0.0], dtype=torch.float64))  # type: ignore[arg-type]
    msg, state = channel.encode(v, state, None)  # p = (2, -4, 3)
    assert torch.equal(msg.value, torch.tensor([0.0, -4.0, 0.0], dtype=torch.float64))


def test_encode_does_not_mutate_state() -> None:
    channel = UplinkChannel(TopK(k=1), "econtrol", eta=0.5)
    v = torch.tensor([1.0, -2.0, 3.0])
    _, s1 = channel.encode(v, ClientChannelState(), None)
    snapshot = {k: t.clone() for k, t in s1.as_dict().items()}
    channel.encode(torch.tensor([5.0, 1.0, -1.0]), s1, None)
    assert all(torch.equal(s1.as_dict()[k], snapshot[k]) for k in snapshot)
    assert ClientChannelState.from_dict(s1.as_dict()) == s1


def test_aggregate_under_partial_participation_averages_over_all_clients() -> None:
    """EF21 / EControl server estimate = (1/N) Σ_all h_i, stale clients included (E2 with h = mean h_i)."""
    channel = UplinkChannel(TopK(k=1), "ef21")
    n = 3
    vs = [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]), torch.tensor([4.0, 4.0])]
    clients = [ClientChannelState() for _ in range(n)]
    mirrors = [MirrorState() for _ in range(n)]
    server = ServerChannelState()
    msgs = []
    for i in range(n):
        msg, clients[i] = channel.encode(vs[i], clients[i], None)
        _, mirrors[i] = channel.decode(msg, mirrors[i])
        msgs.append(msg)
    estimate, server = channel.aggregate(msgs, server, n)
    assert torch.equal(estimate, torch.stack(vs).mean(0))
    # only client 1 participates next
    msg, clients[1] = channel.encode(torch.tensor([0.0, 5.0]), clients[1], None)
    _, mirrors[1] = channel.decode(msg, mirrors[1])
    estimate, server = channel.aggregate([msg], server, n)
    expected = torch.stack([m.shift for m in mirrors]).mean(0)  # type: ignore[misc]
    torch.testing.assert_close(estimate, expected)
    assert torch.equal(mirrors[1].shift, torch.tensor([0.0, 5.0]))  # type: ignore[arg-type]


def test_plain_aggregate_is_mean_over_received() -> None:
    channel = UplinkChannel(Identity(), "none")
    msgs = [channel.encode(torch.tensor([float(i)]), ClientChannelState(), None)[0] for i in (1, 2, 6)]
    estimate, state = channel.aggregate(msgs, ServerChannelState(), num_clients=10)
    assert estimate.item() == 3.0 and state.mean_shift is None


def test_channel_validation() -> None:
    with pytest.raises(ValueError, match="contractive"):
        UplinkChannel(RandK(k=1), "ef21")
    with pytest.raises(ValueError, match="unknown"):
        UplinkChannel(TopK(k=1), "ef99")  # type: ignore[arg-type]
    assert UplinkChannel(RandK(k=1), "none").stateful is False
    assert UplinkChannel(TopK(fraction=0.1), "econtrol").effective_eta(50) == 0.1
    assert UplinkChannel(TopK(k=1), "econtrol", eta=0.3).effective_eta(50) == 0.3
