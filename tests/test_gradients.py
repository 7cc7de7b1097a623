"""Gradient routing of the update: where each loss may and may not send gradients (DreamerV3, Eq. 5, 10, 11)."""

from __future__ import annotations

import pytest
import torch as th

import sb3_dreamer.dreamer.dreamer as dreamer_module
import sb3_dreamer.dreamer.update as update_module
from sb3_dreamer import Dreamer
from sb3_dreamer.dreamer.world_model import RSSM, bound_action
from tests.conftest import tiny


def test_kl_balancing_sends_dyn_to_the_prior_and_rep_to_the_posterior() -> None:
    """dyn = KL[sg(q) || p] trains only the prior, rep = KL[q || sg(p)] only the posterior (swapping them fails)."""
    rssm = RSSM(deter=8, stoch=4, classes=5, units=8, action_dim=1, embed_dim=6)
    generator = th.Generator().manual_seed(0)
    post_logits = (3 * th.randn(2, 4, 5, generator=generator)).requires_grad_(True)
    prior_logits = (3 * th.randn(2, 4, 5, generator=generator)).requires_grad_(True)
    post_lp, prior_lp = post_logits.log_softmax(-1), prior_logits.log_softmax(-1)
    dyn, rep = rssm.kl_loss(post_lp, prior_lp, free_nats=0.0)
    assert th.allclose(dyn, rep)  # the same KL value, different stop-gradients
    d_post, d_prior = th.autograd.grad(dyn.sum(), [post_logits, prior_logits], allow_unused=True, retain_graph=True)
    assert (d_post is None or th.all(d_post == 0)) and d_prior.abs().sum() > 0
    d_post, d_prior = th.autograd.grad(rep.sum(), [post_logits, prior_logits], allow_unused=True)
    assert d_post.abs().sum() > 0 and (d_prior is None or th.all(d_prior == 0))


def test_free_bits_stop_the_gradient_below_the_threshold() -> None:
    rssm = RSSM(deter=8, stoch=4, classes=5, units=8, action_dim=1, embed_dim=6)
    logits = th.randn(3, 4, 5).requires_grad_(True)
    lp = logits.log_softmax(-1)
    dyn, rep = rssm.kl_loss(lp, (lp + 0.01 * th.randn_like(lp)).log_softmax(-1), free_nats=1.0)
    assert th.all(dyn == 1.0) and th.all(rep == 1.0)
    (grad,) = th.autograd.grad((dyn + rep).sum(), [logits])
    assert th.all(grad == 0)


@pytest.mark.parametrize(
    "settings",
    [
        dict(actor_grad="reinforce"),
        dict(actor_grad="dynamics"),
        # The replay-value loss, bootstrapped from all imagination starts and from a subset of them.
        dict(actor_grad="dynamics", replay_value_scale=0.3),
        dict(actor_grad="reinforce", replay_value_scale=0.3, imagination_starts=5),
    ],
)
def test_actor_and_critic_losses_reach_only_their_own_parameters(settings: dict, monkeypatch) -> None:
    """In a real update, the actor's backward leaves world-model and critic gradients at None, the critic's leaves the
    world model's and the actor's at None."""
    model = Dreamer("MlpPolicy", "Pendulum-v1", seed=0, **tiny(learning_starts=64, **settings))
    model.learn(64)  # fills the buffer, no update yet
    policy = model.policy
    groups = {
        "world model": policy.world_model_parameters(),
        "actor": list(policy.actor.parameters()),
        "critic": list(policy.critic.parameters()),
    }
    checked: list[str] = []
    original = dreamer_module.optimizer_step

    def checking_step(optimizer: th.optim.Optimizer, loss: th.Tensor, max_norm: float) -> float:
        own = {id(p) for group in optimizer.param_groups for p in group["params"]}
        others = {name: params for name, params in groups.items() if id(params[0]) not in own}
        for params in others.values():
            for param in params:
                param.grad = None
        norm = original(optimizer, loss, max_norm)
        owner = next(name for name in groups if name not in others)
        for name, params in others.items():
            assert all(param.grad is None for param in params), f"the {owner} loss reached the {name}"
        assert any(param.grad is not None and param.grad.abs().sum() > 0 for param in params_of(optimizer))
        checked.append(owner)
        return norm

    monkeypatch.setattr(dreamer_module, "optimizer_step", checking_step)  # actor and critic steps
    monkeypatch.setattr(update_module, "optimizer_step", checking_step)  # the world model's (update.world_model_step)
    model.learning_starts = 0
    model.train(1, model.batch_size)
    assert checked == ["world model", "actor", "critic"]


def params_of(optimizer: th.optim.Optimizer) -> list[th.nn.Parameter]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def test_bound_action_scales_onto_the_bound_and_keeps_a_gradient() -> None:
    """a / sg(max(1, |a|)): in-range actions unchanged, out-of-range ones at +-1 with gradient 1 / |a| (not 0)."""
    action = th.tensor([-3.0, -1.0, -0.5, 0.0, 0.7, 1.0, 4.0], requires_grad=True)
    bounded = bound_action(action)
    assert th.equal(bounded.detach(), th.tensor([-1.0, -1.0, -0.5, 0.0, 0.7, 1.0, 1.0]))
    (grad,) = th.autograd.grad(bounded.sum(), [action])
    assert th.allclose(grad, th.tensor([1 / 3, 1.0, 1.0, 1.0, 1.0, 1.0, 0.25]))


@pytest.mark.parametrize("actor_grad", ["reinforce", "dynamics"])
def test_imagined_actions_enter_the_sequence_model_in_bounds(actor_grad: str, monkeypatch) -> None:
    """With an actor whose samples leave [-1, 1] (std up to 5), every action the sequence model sees in a real update,
    imagined or replayed, lies in [-1, 1], and some imagined samples were out of range (so the check is not empty)."""
    model = Dreamer(
        "MlpPolicy", "Pendulum-v1", seed=0, actor_grad=actor_grad, **tiny(learning_starts=64, policy_kwargs=dict(
            model_size="debug", min_std=2.0, max_std=5.0))
    )  # fmt: skip
    model.learn(64)
    seen: list[th.Tensor] = []
    raw: list[th.Tensor] = []
    rssm = model.policy.rssm
    original_imagine = rssm.imagine

    def recording_imagine(start, policy, horizon):
        feats, actions = original_imagine(start, policy, horizon)
        raw.append(actions.detach())
        return feats, actions

    def hook(module: th.nn.Module, inputs: tuple[th.Tensor]) -> None:
        seen.append(inputs[0][..., rssm.stoch_dim :].detach())  # img_in's input is [z_{t-1}, a_{t-1}]

    monkeypatch.setattr(rssm, "imagine", recording_imagine)
    handle = rssm.img_in.register_forward_pre_hook(hook)
    model.train(gradient_steps=1, batch_size=model.batch_size)
    handle.remove()
    assert raw and th.cat([a.flatten() for a in raw]).abs().max() > 1.5  # the actor did sample out of range
    actions = th.cat([a.flatten() for a in seen])
    assert actions.numel() > 0 and actions.abs().max() <= 1.0
