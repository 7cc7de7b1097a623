"""Pieces of Dreamer's update: lambda-returns, parameter freezing, optimiser steps, the hybrid real-data losses and
the open-loop preview.

Paper: Hafner et al., "Mastering diverse control tasks through world models", Nature 2025 (arXiv 2301.04104),
Methods "Critic learning" and "Actor learning". Reference implementation: https://github.com/danijar/dreamerv3.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import torch as th

from sb3_dreamer.dreamer.policies import DreamerPolicy
from sb3_dreamer.dreamer.type_aliases import RSSMState, SequenceSamples


def lambda_return(reward: th.Tensor, cont: th.Tensor, value: th.Tensor, gamma: float, return_lambda: float) -> th.Tensor:
    """Bootstrapped lambda-returns (DreamerV3, Eq. 7; Sutton & Barto 12.1).

    R_t = r_{t+1} + gamma * c_{t+1} * ((1 - lambda) * v(s_{t+1}) + lambda * R_{t+1}),  R_H = v(s_H).

    :param reward: rewards r_1..r_H (H, N)
    :param cont: continue probabilities c_1..c_H (H, N)
    :param value: values v(s_0)..v(s_H) (H + 1, N)
    :param gamma: discount
    :param return_lambda: lambda
    :return: returns R_0..R_{H-1} (H, N)
    """
    assert reward.shape == cont.shape and value.shape[0] == reward.shape[0] + 1, (reward.shape, cont.shape, value.shape)
    ret = value[-1]
    returns = []
    for t in reversed(range(reward.shape[0])):
        ret = reward[t] + gamma * cont[t] * ((1.0 - return_lambda) * value[t + 1] + return_lambda * ret)
        returns.append(ret)
    return th.stack(returns[::-1])


@contextlib.contextmanager
def frozen(params: list[th.nn.Parameter]) -> Iterator[None]:
    """Switch off ``requires_grad`` of ``params`` inside the block (gradients still flow through them to their inputs).

    :param params: parameters to freeze; they get ``requires_grad=True`` back on exit
    """
    for param in params:
        param.requires_grad_(False)
    try:
        yield
    finally:
        for param in params:
            param.requires_grad_(True)


def map_obs(obs: th.Tensor | dict[str, th.Tensor], fn: Callable[[th.Tensor], th.Tensor]) -> th.Tensor | dict[str, th.Tensor]:
    """Apply ``fn`` to an observation tensor or to each tensor of a Dict observation."""
    if isinstance(obs, dict):
        return {key: fn(value) for key, value in obs.items()}
    return fn(obs)


def flatten_time(obs: th.Tensor | dict[str, th.Tensor]) -> th.Tensor | dict[str, th.Tensor]:
    """(B, T, ...) -> (B * T, ...) for a tensor or each tensor of a dict."""
    return map_obs(obs, lambda x: x.flatten(0, 1))


def optimizer_step(optimizer: th.optim.Optimizer, loss: th.Tensor, max_norm: float) -> float:
    """Zero, backpropagate, clip the gradient norm and step; returns the gradient norm before clipping."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    norm = th.nn.utils.clip_grad_norm_(params, max_norm)
    optimizer.step()
    return float(norm)


def real_data_losses(
    policy: DreamerPolicy, feat: th.Tensor, data: SequenceSamples, scale: th.Tensor, gamma: float, return_lambda: float
) -> tuple[th.Tensor, th.Tensor]:
    """Hybrid fallback (seed 004, MBPO flavour): actor-critic losses along replayed real sequences.

    Transitions t -> t+1 inside one episode use the real reward r_{t+1} and continue flag; the actor takes a
    likelihood-ratio step on the real action a_t (stored in row t + 1) with the lambda-return advantage.

    :param policy: the Dreamer policy (critic, actor)
    :param feat: posterior model states (B, T, F), detached
    :param data: the replayed batch
    :param scale: the current return scale
    :param gamma: discount
    :param return_lambda: lambda of the lambda-returns
    :return: actor and critic losses
    """
    valid = (~data.is_first[:, 1:]).float()  # (B, T-1): row t+1 continues row t's episode
    reward = (data.rewards[:, 1:] * valid).T  # (T-1, B)
    cont = ((~data.is_terminal[:, 1:]).float() * valid).T
    feats = feat.transpose(0, 1)  # (T, B, F)
    with th.no_grad():
        value = policy.value(feats)
        returns = lambda_return(reward, cont, value, gamma, return_lambda)
    weight = valid.T
    dist = policy.action_dist(feats[:-1])
    advantage = (returns - value[:-1]) / scale
    actor_loss = -(weight * (dist.log_prob(data.prev_actions[:, 1:].transpose(0, 1)) * advantage)).mean()
    critic_loss = (weight * policy.critic.loss(feats[:-1], returns)).mean()
    return actor_loss, critic_loss


def open_loop_strips(policy: DreamerPolicy, data: SequenceSamples) -> dict[str, np.ndarray]:
    """Real over open-loop imagined frames of the first replayed sequence, per image key (CHW strips for TensorBoard).

    The first ``context`` steps are filtered with the posterior, the rest imagined with the replayed actions.

    :param policy: the Dreamer policy
    :param data: a replayed batch
    :return: one strip per image observation key (none for vector observations)
    """
    if not policy.codec.image_specs:
        return {}
    batch_length = data.rewards.shape[1]
    context = min(5, batch_length - 1)
    with th.no_grad():
        obs = map_obs(data.observations, lambda x: x[:1])
        embed = policy.codec.encode(flatten_time(obs)).view(1, batch_length, -1)
        post, _, _ = policy.rssm.observe(embed[:, :context], data.prev_actions[:1, :context], data.is_first[:1, :context])
        state = RSSMState(post.deter[:, -1], post.stoch[:, -1])
        feats = [th.cat(state, dim=-1)]
        for t in range(context, batch_length):
            deter = policy.rssm.sequence_step(state, data.prev_actions[:1, t])
            state = RSSMState(deter, policy.rssm.prior_log_probs(deter).exp().flatten(-2))
            feats.append(th.cat(state, dim=-1))
        imagined = policy.codec.decode_images(th.cat(feats[1:]))
        real, _ = policy.codec.targets(flatten_time(map_obs(obs, lambda x: x[:, context:])))
    strips = {}
    for key, frames in imagined.items():
        truth = real[key] + 0.5  # (T', C, H, W)
        strip = th.cat([th.cat(list(truth), dim=-1), th.cat(list(frames), dim=-1)], dim=-2)  # real over imagined
        strips[key] = (strip if strip.shape[0] in (1, 3) else strip[:1]).cpu().numpy()
    return strips
