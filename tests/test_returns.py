"""symlog, two-hot and lambda-returns against hand-computed tiny cases."""

from __future__ import annotations

import torch as th

from sb3_dreamer.dreamer import lambda_return
from sb3_dreamer.dreamer.distributions import (
    gumbel_noise,
    sample_onehot,
    symexp,
    symlog,
    twohot_bins,
    twohot_encode,
    twohot_loss,
    twohot_mean,
    unimix_logits,
)
from sb3_dreamer.dreamer.update import replay_lambda_return


def test_symlog_symexp() -> None:
    x = th.tensor([-100.0, -1.0, 0.0, 1.0, 1000.0])
    th.testing.assert_close(symlog(x), th.sign(x) * th.log(x.abs() + 1))
    th.testing.assert_close(symexp(symlog(x)), x, rtol=1e-5, atol=1e-4)


def test_twohot_encoding_splits_weight_between_neighbours() -> None:
    bins = th.tensor([-1.0, 0.0, 1.0, 2.0])
    encoded = twohot_encode(th.tensor([0.25, 2.0, 5.0, -3.0]), bins)
    expected = th.tensor([[0, 0.75, 0.25, 0], [0, 0, 0, 1.0], [0, 0, 0, 1.0], [1.0, 0, 0, 0]])
    th.testing.assert_close(encoded, expected)


def test_twohot_head_recovers_target() -> None:
    bins = twohot_bins(255)
    target = th.tensor([-250.0, -3.0, 0.0, 0.5, 42.0])
    logits = th.log(twohot_encode(symlog(target), bins) + 1e-12)
    th.testing.assert_close(twohot_mean(logits, bins), target, rtol=1e-3, atol=1e-3)
    assert twohot_loss(logits, target, bins).max() < 1.0
    assert (twohot_loss(th.zeros(5, 255), target, bins) > 5.0).all()


def test_unimix() -> None:
    log_probs = unimix_logits(th.tensor([[100.0, 0.0, 0.0, 0.0]]), 0.01)
    th.testing.assert_close(log_probs.exp(), th.tensor([[0.9925, 0.0025, 0.0025, 0.0025]]))


def test_lambda_return_hand_computed() -> None:
    reward = th.tensor([[1.0], [2.0]])
    cont = th.tensor([[1.0], [0.0]])
    value = th.tensor([[10.0], [20.0], [30.0]])
    gamma, lam = 0.5, 0.5
    # R_1 = r_2 + gamma * c_2 * (...) = 2 (terminal); R_0 = 1 + 0.5 * 1 * (0.5 * 20 + 0.5 * 2) = 6.5
    th.testing.assert_close(lambda_return(reward, cont, value, gamma, lam), th.tensor([[6.5], [2.0]]))
    # lambda = 0: one-step TD targets; lambda = 1: Monte-Carlo return bootstrapped at the end.
    th.testing.assert_close(lambda_return(reward, th.ones(2, 1), value, 1.0, 0.0), th.tensor([[21.0], [32.0]]))
    th.testing.assert_close(lambda_return(reward, th.ones(2, 1), value, 1.0, 1.0), th.tensor([[33.0], [32.0]]))
    # Per-step lambdas (lambda_1 = 0, lambda_2 = 1): R_1 = r_2 + R_2 = 2 + 30, R_0 = r_1 + v(s_1) = 1 + 20.
    per_step = th.tensor([[0.0], [1.0]])
    th.testing.assert_close(lambda_return(reward, th.ones(2, 1), value, 1.0, per_step), th.tensor([[21.0], [32.0]]))


def test_replay_lambda_return_stops_at_terminals_and_bootstraps_at_truncations() -> None:
    reward = th.tensor([[0.0, 1.0, 2.0, 3.0]])
    boot = th.tensor([[10.0, 20.0, 30.0, 40.0]])
    gamma, lam = 0.5, 0.5
    # Row 2 is terminal (row 3 starts the next episode): R_1 = r_2 = 2, R_0 = 1 + 0.5 * (0.5 * 20 + 0.5 * 2) = 6.5.
    terminal = th.tensor([[False, False, True, False]])
    returns = replay_lambda_return(reward, terminal, terminal.clone(), boot, gamma, lam)
    th.testing.assert_close(returns[:, :2], th.tensor([[6.5, 2.0]]))
    # Row 1 is truncated: its predecessor bootstraps fully from it, R_0 = r_1 + gamma * boot_1 = 11.
    last = th.tensor([[False, True, False, False]])
    returns = replay_lambda_return(reward, th.zeros_like(last), last, boot, gamma, lam)
    th.testing.assert_close(returns[:, 0], th.tensor([11.0]))
    # R_2 = r_3 + gamma * ((1 - lam) * boot_3 + lam * R_3), R_3 = boot_3.
    th.testing.assert_close(returns[:, 2], th.tensor([3.0 + 0.5 * 40.0]))


def test_replay_lambda_return_without_episode_ends_is_the_lambda_return() -> None:
    th.manual_seed(0)
    reward, boot = th.randn(3, 7), th.randn(3, 7)
    flags = th.zeros(3, 7, dtype=th.bool)
    expected = lambda_return(reward[:, 1:].T, th.ones(6, 3), boot.T, 0.9, 0.8).T
    th.testing.assert_close(replay_lambda_return(reward, flags, flags, boot, 0.9, 0.8), expected)


def test_fast_twohot_loss_and_mean_equal_the_dense_formulas() -> None:
    # The gather form of the loss and the matmul form of the mean compute Eq. 9-10 as written with (..., K) one-hots.
    th.manual_seed(0)
    bins = twohot_bins(255)
    logits = th.randn(15, 64, 255, requires_grad=True)
    target = th.cat([th.randn(15, 60) * 50, th.tensor([[1e9, -1e9, 0.0, 20.0]]).expand(15, 4)], dim=1)
    dense = -(twohot_encode(symlog(target), bins) * logits.log_softmax(-1)).sum(-1)
    fast = twohot_loss(logits, target, bins)
    th.testing.assert_close(fast, dense, rtol=1e-5, atol=1e-5)
    (dense_grad,) = th.autograd.grad(dense.sum(), logits)
    (fast_grad,) = th.autograd.grad(fast.sum(), logits)
    th.testing.assert_close(fast_grad, dense_grad, rtol=1e-5, atol=1e-6)
    th.testing.assert_close(twohot_mean(logits, bins), symexp((logits.softmax(-1) * bins).sum(-1)))


def test_fast_unimix_equals_the_plain_softmax_and_its_gradient() -> None:
    th.manual_seed(0)
    for shape in [(256, 16, 8), (64, 32, 32), (7, 3), (5,)]:
        logits = (th.randn(shape) * 3).requires_grad_(True)
        plain = ((1 - 0.01) * logits.softmax(-1) + 0.01 / shape[-1]).log()
        fast = unimix_logits(logits, 0.01)
        th.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-6)
        weights = th.randn(shape)
        (plain_grad,) = th.autograd.grad((plain * weights).sum(), logits)
        (fast_grad,) = th.autograd.grad((fast * weights).sum(), logits)
        th.testing.assert_close(fast_grad, plain_grad, rtol=1e-5, atol=1e-6)


def test_onehot_sample_is_the_gumbel_argmax_with_straight_through_gradient() -> None:
    th.manual_seed(0)
    log_probs = unimix_logits(th.randn(128, 16, 8), 0.01).requires_grad_(True)
    noise = gumbel_noise(log_probs.shape)
    sample = sample_onehot(log_probs, straight_through=True, noise=noise)
    expected = th.nn.functional.one_hot((log_probs.detach() + noise).argmax(-1), 8).float()
    th.testing.assert_close(sample.detach(), expected)  # up to the rounding of + p - sg(p)
    assert th.equal(sample_onehot(log_probs, straight_through=False, noise=noise), expected)
    (grad,) = th.autograd.grad((sample * th.arange(8.0)).sum(), log_probs)
    th.testing.assert_close(grad, log_probs.exp().detach() * th.arange(8.0))  # d(p . w)/d(log p) = p * w
