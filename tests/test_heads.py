"""The output heads and return normalisation (``sb3_dreamer.dreamer.heads``): their maths and their saved state."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
import torch.nn.functional as F

from sb3_dreamer import Dreamer
from sb3_dreamer.dreamer.distributions import symexp, symlog, twohot_encode
from sb3_dreamer.dreamer.heads import BernoulliHead, ReturnNorm, TwoHotHead
from tests.conftest import tiny


def test_two_hot_head_starts_at_zero_and_its_loss_and_readout_agree() -> None:
    head = TwoHotHead(6, [8], num_bins=41)
    feat = th.randn(5, 6)
    th.testing.assert_close(head.predict(feat), th.zeros(5))  # zero-initialised output layer
    # The loss is minimised by the two-hot encoding of symlog(target), and that encoding reads out as the target.
    target = th.tensor([-30.0, -1.5, 0.0, 0.7, 12.0])
    best = twohot_encode(symlog(target), head.bins).clamp_min(1e-12).log()
    np.testing.assert_allclose(head.readout(best).numpy(), target.numpy(), rtol=1e-4, atol=1e-4)
    # The loss is the cross-entropy against that encoding, from logits and from shared log-probabilities alike.
    logits = th.randn(5, 41)
    expected = -(twohot_encode(symlog(target), head.bins) * logits.log_softmax(-1)).sum(-1)
    th.testing.assert_close(head.nll(logits.log_softmax(-1), target), expected)
    head[-1].bias.data = logits[0].clone()  # zero weights: every state gets these logits
    th.testing.assert_close(
        head.loss(feat, target), -(twohot_encode(symlog(target), head.bins) * logits[0].log_softmax(-1)).sum(-1)
    )
    th.testing.assert_close(head.predict(feat), symexp(logits[0].softmax(-1) @ head.bins).expand(5))


def test_two_hot_head_learns_a_constant() -> None:
    th.manual_seed(0)
    head = TwoHotHead(4, [16], num_bins=255)
    optimizer = th.optim.Adam(head.parameters(), lr=1e-2)
    feat, target = th.randn(32, 4), th.full((32,), 7.5)
    for _ in range(300):
        optimizer.zero_grad()
        head.loss(feat, target).mean().backward()
        optimizer.step()
    assert abs(head.predict(feat).mean().item() - 7.5) < 0.3


def test_bernoulli_head_is_binary_cross_entropy_on_one_logit() -> None:
    head = BernoulliHead(3, [4])
    feat = th.randn(2, 7, 3)
    target = th.rand(2, 7) > 0.3
    logits = head(feat).squeeze(-1)
    assert head.logits(feat).shape == (2, 7)
    th.testing.assert_close(head.prob(feat), th.sigmoid(logits))
    th.testing.assert_close(
        head.loss(feat, target), F.binary_cross_entropy_with_logits(logits, target.float(), reduction="none")
    )


def test_return_norm_percentiles_ema_and_limit() -> None:
    norm = ReturnNorm()
    first = th.arange(101, dtype=th.float32)  # P5 = 5, P95 = 95
    norm.update(first, decay=0.99)
    assert (norm.low.item(), norm.high.item()) == pytest.approx((5.0, 95.0))  # the first update sets the EMAs
    norm.update(first * 0.0, decay=0.99)  # P5 = P95 = 0
    assert (norm.low.item(), norm.high.item()) == pytest.approx((0.99 * 5.0, 0.99 * 95.0))
    assert norm.scale(limit=1.0).item() == pytest.approx(0.99 * 90.0)
    assert norm.scale(limit=1000.0).item() == 1000.0
    small = ReturnNorm()
    small.update(th.full((10,), 0.01), decay=0.99)
    assert small.scale(limit=1.0).item() == 1.0  # small returns are not blown up
    with th.enable_grad():
        returns = th.randn(50, requires_grad=True)
        small.update(returns, decay=0.5)
    assert not small.low.requires_grad and not small.high.requires_grad  # statistics carry no gradient


def test_policy_state_dict_keeps_head_names_and_loads_older_files() -> None:
    model = Dreamer("MlpPolicy", "Pendulum-v1", seed=0, **tiny())
    model.learn(40)
    state = model.policy.state_dict()
    assert {"reward_head.0.weight", "continue_head.0.weight", "critic.0.weight", "return_norm.low"} <= set(state)
    assert not any(key.endswith("bins") for key in state)  # derived from num_bins, not saved
    assert float(state["return_norm.initialized"]) == 1.0
    # A state dict written before the heads module existed (policy-level bins and return statistics) still loads.
    old = {key: value for key, value in state.items() if not key.startswith("return_norm.")}
    old.update(
        bins=model.policy.critic.bins,
        return_low=state["return_norm.low"],
        return_high=state["return_norm.high"],
        return_norm_initialized=state["return_norm.initialized"],
    )
    fresh = Dreamer("MlpPolicy", "Pendulum-v1", seed=1, **tiny())
    fresh.policy.load_state_dict(old)
    for key, value in state.items():
        th.testing.assert_close(fresh.policy.state_dict()[key], value, rtol=0, atol=0, msg=key)
