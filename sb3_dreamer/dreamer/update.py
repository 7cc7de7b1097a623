"""Pieces of Dreamer's update: lambda-returns, parameter freezing, optimiser steps, behaviour learning in imagination,
the hybrid real-data losses and the open-loop preview.

Paper: Hafner et al., "Mastering diverse control tasks through world models", Nature 2025 (arXiv 2301.04104),
Methods "Critic learning" and "Actor learning". Reference implementation: https://github.com/danijar/dreamerv3.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch as th

from sb3_dreamer.common.timing import PhaseTimer
from sb3_dreamer.dreamer.policies import DreamerPolicy
from sb3_dreamer.dreamer.type_aliases import RSSMState, SequenceSamples

if TYPE_CHECKING:
    from sb3_dreamer.dreamer.dreamer import Dreamer


def lambda_return(
    reward: th.Tensor, cont: th.Tensor, value: th.Tensor, gamma: float, return_lambda: float | th.Tensor
) -> th.Tensor:
    """Bootstrapped lambda-returns (DreamerV3, Eq. 7; Sutton & Barto 12.1).

    R_t = r_{t+1} + gamma * c_{t+1} * ((1 - lambda_{t+1}) * v(s_{t+1}) + lambda_{t+1} * R_{t+1}),  R_H = v(s_H).

    :param reward: rewards r_1..r_H (H, N)
    :param cont: continue probabilities c_1..c_H (H, N)
    :param value: values v(s_0)..v(s_H) (H + 1, N)
    :param gamma: discount
    :param return_lambda: lambda, one number or one per step lambda_1..lambda_H (H, N) (0 cuts the return at that step)
    :return: returns R_0..R_{H-1} (H, N)
    """
    assert reward.shape == cont.shape and value.shape[0] == reward.shape[0] + 1, (reward.shape, cont.shape, value.shape)
    per_step = isinstance(return_lambda, th.Tensor)
    assert not per_step or return_lambda.shape == reward.shape, (return_lambda.shape, reward.shape)
    ret = value[-1]
    returns = []
    for t in reversed(range(reward.shape[0])):
        lam = return_lambda[t] if per_step else return_lambda
        ret = reward[t] + gamma * cont[t] * ((1.0 - lam) * value[t + 1] + lam * ret)
        returns.append(ret)
    return th.stack(returns[::-1])


def replay_lambda_return(
    reward: th.Tensor, terminal: th.Tensor, last: th.Tensor, boot: th.Tensor, gamma: float, return_lambda: float
) -> th.Tensor:
    """Lambda-returns along replayed real sequences, bootstrapped from ``boot`` (DreamerV3 code, ``repval`` loss).

    Row t of a sequence holds (x_t, r_t, is_terminal_t); ``last_t`` says that row t ends its episode (terminated or
    truncated), so that row t + 1 belongs to the next one. With live_t = 1 - is_terminal_t and c_t = 1 - last_t, this is
    :func:`lambda_return` with continue flags live and per-step lambdas lambda * c::

        R_t = r_{t+1} + gamma * live_{t+1} * ((1 - lambda * c_{t+1}) * boot_{t+1} + lambda * c_{t+1} * R_{t+1}),
        R_{T-1} = boot_{T-1}

    A truncated episode end bootstraps from its last state; a terminal one adds nothing after its reward. Returns of
    rows that end their episode mix two episodes: the caller weights them 0.

    :param reward: rewards r_0..r_{T-1} (B, T)
    :param terminal: is_terminal flags (B, T)
    :param last: episode-end flags (B, T)
    :param boot: bootstrap values of each row's state (B, T)
    :param gamma: discount
    :param return_lambda: lambda
    :return: returns R_0..R_{T-2} (B, T - 1)
    """
    assert reward.shape == terminal.shape == last.shape == boot.shape, (reward.shape, terminal.shape, last.shape)
    live = (~terminal[:, 1:]).to(boot.dtype).T
    lambdas = return_lambda * (~last[:, 1:]).to(boot.dtype).T
    return lambda_return(reward[:, 1:].T, live, boot.T, gamma, lambdas).T


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


def world_model_step(algo: Dreamer, data: SequenceSamples) -> tuple[RSSMState, th.Tensor, dict[str, float]]:
    """One world-model update on a replayed batch (DreamerV3, Eq. 5): prediction losses and KL balancing with free bits.

    L = sum_t [ L_rec + L_rew + L_cont + beta_dyn * max(1, KL[sg(q) || p]) + beta_rep * max(1, KL[q || sg(p)]) ],
    weighted by ``algo.loss_scales``; one optimiser step with the world model's gradient clip. Dreamer's ``train`` and
    :func:`sb3_dreamer.transfer.pretrain_world_model` both run it.

    :param algo: the Dreamer whose world model learns (its loss scales, free bits, clip and autocast apply)
    :param data: a replayed batch (B, T, ...)
    :return: posterior states (B, T, ...), the same as features (B, T, F), and the numbers to log (each loss term,
        the total and the gradient norm)
    :raises ValueError: if the loss is not finite (nothing is stepped then)
    """
    policy = algo.policy
    B, T = data.rewards.shape
    flat_obs = flatten_time(data.observations)
    with algo._autocast():
        embed = policy.codec.encode(flat_obs).view(B, T, -1)
        post, post_lp, prior_lp = policy.rssm.observe(embed, data.prev_actions, data.is_first)
        feat = th.cat(post, dim=-1)  # (B, T, F)
        dyn, rep = policy.rssm.kl_loss(post_lp, prior_lp, algo.free_nats)
        losses = {
            "rec": policy.codec.reconstruction_loss(feat.flatten(0, 1), flat_obs).view(B, T),
            "rew": policy.reward_head.loss(feat, data.rewards),
            "cont": policy.continue_head.loss(feat, ~data.is_terminal),
            "dyn": dyn,
            "rep": rep,
        }
        assert losses.keys() == algo.loss_scales.keys(), (losses.keys(), algo.loss_scales.keys())
        loss = sum(algo.loss_scales[key] * term.mean() for key, term in losses.items())
    if not th.isfinite(loss):
        raise ValueError(f"Dreamer: non-finite world-model loss after {algo._n_updates} updates; lower learning_rate")
    norm = optimizer_step(policy.world_model_optimizer, loss, algo.world_model_grad_clip)
    metrics = {f"{key}_loss": term.mean().item() for key, term in losses.items()}
    metrics.update(world_model_loss=loss.item(), world_model_grad_norm=norm)
    return post, feat, metrics


@contextlib.contextmanager
def imagination_context(policy: DreamerPolicy, dynamics_grad: bool) -> Iterator[None]:
    """No gradients at all for likelihood-ratio actors; otherwise gradients reach the actions, not the world model.

    The critic's weights are frozen too: the actor's backward pass would otherwise compute critic weight gradients
    that the critic's own step discards (it zeroes them first). Gradients still flow through the critic's values
    into the imagined states and so to the actor.
    """
    if not dynamics_grad:
        with th.no_grad():
            yield
        return
    with frozen([*policy.world_model_parameters(), *policy.critic.parameters()]):
        yield


def behavior_losses(
    algo: Dreamer,
    post: RSSMState,
    feat: th.Tensor,
    data: SequenceSamples,
    dynamics_grad: bool,
    timer: PhaseTimer,
) -> tuple[th.Tensor, th.Tensor, dict[str, float]]:
    """Actor and critic losses from an imagined rollout (DreamerV3, Methods "Actor learning" and "Critic learning").

    Imagines H steps from (a subset of) the replayed posterior states, detached from the world model::

        s_0 --a_0--> s_1 --a_1--> ... --a_{H-1}--> s_H

    r_t, c_t = heads(s_t) for t >= 1 (reward and continue on arrival); v_t = critic(s_t) for t = 0..H;
    c_0 = 1 - is_terminal of the replayed start (imagining past a real terminal state is not weighted).

    :param algo: the Dreamer whose settings (horizon, starts, discount, lambda, scales) apply
    :param post: posterior states of the replayed batch (B, T, ...)
    :param feat: the same states as features (B, T, F), for the hybrid real-data losses
    :param data: the replayed batch
    :param dynamics_grad: actor gradients through the imagined dynamics (else likelihood ratios)
    :param timer: phase timer; the imagination phase is lapped here
    :return: actor loss, critic loss and the numbers to log (entropy, imagined return, return scale, lowest and
        mean imagined continue probability, the critic's mean imagined value, advantage spread)
    """
    policy = algo.policy

    def imagination_policy(state_feat: th.Tensor) -> th.Tensor:
        # The actor sees detached states; with dynamics gradients, its action still steers the imagined rollout.
        return policy.action_dist(state_feat.detach()).sample(straight_through=dynamics_grad)

    start = RSSMState(post.deter.detach().flatten(0, 1), post.stoch.detach().flatten(0, 1))
    start_cont = (~data.is_terminal).float().flatten()
    keep = None
    if algo.imagination_starts is not None and algo.imagination_starts < start_cont.shape[0]:
        keep = th.randperm(start_cont.shape[0], device=algo.device)[: algo.imagination_starts]
        start, start_cont = RSSMState(start.deter[keep], start.stoch[keep]), start_cont[keep]
    with imagination_context(policy, dynamics_grad):
        feats, actions = policy.rssm.imagine(start, imagination_policy, algo.imagination_horizon)
        reward = policy.reward_head.predict(feats[1:])  # (H, N)
        cont = policy.continue_head.prob(feats[1:])  # (H, N)
        if dynamics_grad:  # values carry gradients into the imagined states, not into the critic
            value = policy.value(feats)  # (H + 1, N)
    if not dynamics_grad:  # one critic pass serves the values (detached) and the critic's loss
        critic_logits = policy.critic(feats)
        value = policy.critic.readout(critic_logits.detach())
        critic_logits = critic_logits[:-1]
    else:
        critic_logits = policy.critic(feats[:-1].detach())
    timer.lap("imagination")

    # Lambda-returns (Eq. 7) and per-step weights w_t = c_0 * prod_{k<=t} gamma * c_k (stop-gradient).
    returns = lambda_return(reward, cont, value, algo.gamma, algo.return_lambda)  # (H, N)
    discount = th.cat([start_cont[None], algo.gamma * cont[:-1]]).detach()
    weight = th.cumprod(discount, dim=0)  # (H, N)
    policy.return_norm.update(returns, algo.return_norm_decay)
    scale = policy.return_norm.scale(algo.return_norm_limit)

    # Actor (Eq. 11): advantages normalised by the return scale, entropy bonus.
    dist = policy.action_dist(feats[:-1].detach())
    advantage = (returns - value[:-1].detach()) / scale
    if dynamics_grad:
        objective = advantage
    else:
        objective = dist.log_prob(actions.detach()) * advantage.detach()
    entropy = dist.entropy()
    actor_loss = -(weight * (objective + algo.actor_entropy * entropy)).mean()
    # Critic (Eq. 10): two-hot regression on lambda-returns, regularised toward the slow critic.
    slow_value = policy.value(feats[:-1].detach(), slow=True)
    critic_log_probs = critic_logits.log_softmax(-1)
    critic_loss = (
        weight
        * (
            policy.critic.nll(critic_log_probs, returns.detach())
            + algo.slow_critic_scale * policy.critic.nll(critic_log_probs, slow_value)
        )
    ).mean()
    # Replay-value loss (replay_value_scale > 0): the critic also regresses real returns along the replayed sequences.
    if algo.replay_value_scale > 0.0:
        critic_loss = critic_loss + algo.replay_value_scale * replay_value_loss(
            algo, feat.detach(), data, returns[0].detach(), keep
        )
    # Hybrid model-free fallback (real_data_ratio > 0): the same losses along the replayed real sequences.
    if algo.real_data_ratio > 0.0:
        real_actor_loss, real_critic_loss = real_data_losses(
            policy, feat.detach(), data, scale, algo.gamma, algo.return_lambda
        )
        actor_loss = (1.0 - algo.real_data_ratio) * actor_loss + algo.real_data_ratio * real_actor_loss
        critic_loss = (1.0 - algo.real_data_ratio) * critic_loss + algo.real_data_ratio * real_critic_loss
    stats = dict(
        entropy=entropy.mean().item(),
        imagined_return=returns.mean().item(),
        return_scale=float(scale),
        # Failure signals: the continue probabilities met in imagination, how much advantages vary, and the critic's
        # mean value (far below the returns episodes really bring: the critic cannot see beyond the horizon).
        imagined_continue_min=cont.min().item(),
        imagined_continue_mean=cont.mean().item(),
        imagined_value=value[:-1].mean().item(),
        advantage_std=advantage.detach().std().item(),
    )
    return actor_loss, critic_loss, stats


def replay_value_loss(
    algo: Dreamer, feat: th.Tensor, data: SequenceSamples, imagined_return: th.Tensor, starts: th.Tensor | None
) -> th.Tensor:
    """Critic loss on lambda-returns of the replayed real sequences (DreamerV3 code since 2024, ``repval`` loss).

    The returns use the real rewards and terminal flags, and bootstrap from the imagined lambda-return R_0 of each
    replayed state (from the critic's value for states that started no imagination, when ``imagination_starts``
    subsamples them); see :func:`replay_lambda_return`. Like the imagined critic loss, it is regularised toward the
    slow critic. Only the critic learns from it: the model states are detached (DreamerV3 lets it reach the world
    model too, ``repval_grad``).

    :param algo: the Dreamer whose discount, lambda and slow-critic weight apply
    :param feat: posterior model states of the replayed batch (B, T, F), detached
    :param data: the replayed batch
    :param imagined_return: imagined R_0 of the imagination starts (N,), detached
    :param starts: flat indices (into B * T) of the imagination starts, or None when all states started one
    :return: the loss (scalar), before ``replay_value_scale``
    """
    policy = algo.policy
    B, T, _ = feat.shape
    logits = policy.critic(feat)  # (B, T, K)
    with th.no_grad():
        if starts is None:
            boot = imagined_return.clone()
        else:
            boot = policy.critic.readout(logits).flatten()
            boot[starts] = imagined_return
        last = episode_ends(data)
        returns = replay_lambda_return(data.rewards, data.is_terminal, last, boot.view(B, T), algo.gamma, algo.return_lambda)
        slow_value = policy.value(feat[:, :-1], slow=True)
    log_probs = logits[:, :-1].log_softmax(-1)
    weight = (~last[:, :-1]).to(log_probs.dtype)
    loss = policy.critic.nll(log_probs, returns) + algo.slow_critic_scale * policy.critic.nll(log_probs, slow_value)
    return (weight * loss).mean()


def real_data_losses(
    policy: DreamerPolicy, feat: th.Tensor, data: SequenceSamples, scale: th.Tensor, gamma: float, return_lambda: float
) -> tuple[th.Tensor, th.Tensor]:
    """Hybrid fallback (seed 004, MBPO flavour): actor-critic losses along replayed real sequences.

    Transitions t -> t+1 inside one episode use the real reward r_{t+1} and terminal flag, with lambda-returns
    bootstrapped from the critic (:func:`replay_lambda_return`); the actor takes a likelihood-ratio step on the real
    action a_t (stored in row t + 1) with the lambda-return advantage.

    :param policy: the Dreamer policy (critic, actor)
    :param feat: posterior model states (B, T, F), detached
    :param data: the replayed batch
    :param scale: the current return scale
    :param gamma: discount
    :param return_lambda: lambda of the lambda-returns
    :return: actor and critic losses
    """
    last = episode_ends(data)
    with th.no_grad():
        value = policy.value(feat)  # (B, T)
        returns = replay_lambda_return(data.rewards, data.is_terminal, last, value, gamma, return_lambda)
    weight = (~last[:, :-1]).to(value.dtype)  # (B, T-1): row t + 1 continues row t's episode
    dist = policy.action_dist(feat[:, :-1])
    advantage = (returns - value[:, :-1]) / scale
    actor_loss = -(weight * (dist.log_prob(data.prev_actions[:, 1:]) * advantage)).mean()
    critic_loss = (weight * policy.critic.loss(feat[:, :-1], returns)).mean()
    return actor_loss, critic_loss


def episode_ends(data: SequenceSamples) -> th.Tensor:
    """is_last flags (B, T) of a replayed batch: row t ends its episode when row t + 1 starts the next one.

    The last row's flag is unknown and set False; returns never bootstrap past it.
    """
    last = th.zeros_like(data.is_first)
    last[:, :-1] = data.is_first[:, 1:]
    return last


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
