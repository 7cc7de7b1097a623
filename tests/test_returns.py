"""symlog, two-hot and lambda-returns against hand-computed tiny cases."""

from __future__ import annotations

import torch as th

from sb3_dreamer.dreamer import lambda_return
from sb3_dreamer.dreamer.distributions import (
    symexp,
    symlog,
    twohot_bins,
    twohot_encode,
    twohot_loss,
    twohot_mean,
    unimix_logits,
)


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
