"""Meta-model transfer: a target Dreamer whose reward model reads the predictions of frozen source reward heads.

Paper: Sasso, Sabatelli & Wiering, "Multi-Source Transfer Learning for Deep Model-Based Reinforcement Learning",
TMLR 2023 (https://arxiv.org/abs/2205.14410), section 4.3; code https://github.com/remosasso/multi-source-TL-for-deep-MBRL
(``dreamer-MMTL.py``, ``models.py``). The method, as the paper describes it:

1. Train a multi-task agent (:class:`~sb3_dreamer.transfer.MultiTaskVecEnv`); its encoder and decoder are the
   "universal feature space" (UFS).
2. For each source task, train a single-task agent with the UFS encoder copied in and frozen
   (``policy_kwargs=dict(frozen_modules=("encoder",))`` and ``modular_transfer(multi_task, agent,
   copy_modules=["encoder", "decoder"])``).
3. The target agent gets the frozen UFS encoder (and decoder) and the frozen reward heads of the N source agents;
   its reward model is :class:`~sb3_dreamer.dreamer.heads.MetaRewardHead`: one hidden layer over
   ``concat[p_1, ..., p_N, z_t, h_t]``, where ``p_i`` is source head i's prediction on the target's own model state
   (posterior states in world-model learning, imagined states in behaviour learning). The sequence model, the meta
   reward head, the continue head, the actor and the critic train from scratch.

**Difference from the released code**: its ``MetaDecoder1`` builds the reward model's input from ``[z, h]`` only and
never concatenates the source predictions, and ``MetaDecoder2`` hard-codes one source head for Walker/Hopper; so the
published runs amount to "frozen UFS encoder + a fresh one-hidden-layer reward head". We implement the paper's
description (the source predictions do enter), for any N.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch as th

from sb3_dreamer.common.usage import UsageError
from sb3_dreamer.dreamer import Dreamer
from sb3_dreamer.dreamer.heads import TwoHotHead
from sb3_dreamer.transfer.fractional import check_sizes, load_model, modular_transfer


def meta_model_policy_kwargs(n_sources: int, freeze_decoder: bool = True) -> dict[str, object]:
    """``policy_kwargs`` of a meta-model target: ``n_sources`` source reward heads, a frozen encoder (and decoder).

    :param n_sources: number of source agents whose reward heads the target reads
    :param freeze_decoder: freeze the UFS decoder too (the paper's default; ``--dec`` trains it)
    """
    return dict(reward_sources=n_sources, frozen_modules=("encoder", "decoder") if freeze_decoder else ("encoder",))


def meta_model_transfer(
    ufs_source: Dreamer | str | Path, reward_sources: Sequence[Dreamer | str | Path], target: Dreamer
) -> Dreamer:
    """Load the UFS encoder and decoder and the N source reward heads into a meta-model target.

    :param ufs_source: the multi-task agent whose encoder and decoder are the universal feature space
    :param reward_sources: the N source agents (trained with the UFS encoder frozen) whose reward heads are read
    :param target: a fresh Dreamer built with ``policy_kwargs=meta_model_policy_kwargs(N)`` (plus the sources' sizes)
    :return: ``target``, modified in place
    """
    policy = target.policy
    n = len(reward_sources)
    if n == 0:
        raise UsageError("meta_model_transfer needs at least one source agent in reward_sources")
    if policy.reward_sources != n:
        raise UsageError(
            f"The target has {policy.reward_sources} source reward heads but {n} sources were given; build it with "
            f"policy_kwargs=meta_model_policy_kwargs({n})"
        )
    if "encoder" not in policy.frozen_modules:
        raise UsageError(
            "The meta-model target must keep the UFS encoder frozen; build it with "
            f"policy_kwargs=meta_model_policy_kwargs({n})"
        )
    modular_transfer(ufs_source, target, copy_modules=["encoder", "decoder"])
    for index, source in enumerate(reward_sources):
        model = load_model(source, f"reward source {index}")
        if not isinstance(model.policy.reward_head, TwoHotHead):
            raise UsageError(f"Reward source {index} has a meta-model reward head; a source needs a plain reward head")
        check_sizes(model.policy, policy)
        head = model.policy.reward_head.state_dict()
        if not all(th.isfinite(value).all() for value in head.values()):
            raise UsageError(f"Reward source {index}'s reward head holds NaN or infinite values (a diverged model?)")
        policy.reward_head.sources[index].load_state_dict(head)
    return target
