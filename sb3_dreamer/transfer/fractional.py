"""Fractional and modular transfer of a trained Dreamer's parameters into a fresh target Dreamer.

Paper: Sasso, Sabatelli & Wiering, "Multi-Source Transfer Learning for Deep Model-Based Reinforcement Learning",
TMLR 2023 (https://arxiv.org/abs/2205.14410), section 4.2 "Fractional transfer learning"; code
https://github.com/remosasso/multi-source-TL-for-deep-MBRL (``dreamer-FTL.py``, ``tools.py``). The source is
typically a multi-task agent (:class:`~sb3_dreamer.transfer.MultiTaskVecEnv`). Rules, per parameter of the target:

=====================================================================  ================================================
parameter                                                              rule
=====================================================================  ================================================
encoder, decoder, sequence model (GRU, prior and posterior nets),      **copy** from the source
continue head, hidden layers of reward head, actor and critic
first sequence-model layer (``rssm.img_in``), weight columns of the    copy the latent columns; the **action columns
input ``[z_{t-1}, a_{t-1}]``                                           keep their fresh initialisation**
actor output layer                                                     **keep** the fresh initialisation
reward-head and critic output layers (weight and bias)                 **W = W_init + fraction * W_source** (additive,
                                                                       as in the paper; our output layers start at 0)
slow critic                                                            a copy of the transferred critic
return-normalisation statistics, optimiser state                       start fresh
=====================================================================  ================================================

A source tensor larger than the target's (observations padded to more dimensions, more image channels) is cut to
the target's shape: with zero-padded observations (:class:`~sb3_dreamer.transfer.PadObservation`) the cut-off weights
only ever saw zeros. Latent sizes, widths and depths must match (a :class:`~sb3_dreamer.common.UsageError` names the
first difference). **Modular transfer** is the same loader with some modules left at their fresh initialisation
(the paper's exclusion list, fraction 0 for the excluded modules).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch as th

from sb3_dreamer.common.usage import UsageError
from sb3_dreamer.dreamer import Dreamer
from sb3_dreamer.dreamer.policies import POLICY_MODULES, DreamerPolicy, module_of

#: Modules a transfer can copy or leave at init: the policy's own map (name -> parameter-name prefixes).
MODULES = POLICY_MODULES

#: Policy settings that must agree between source and target.
_SIZE_KEYS = ("deter", "stoch", "classes", "units", "mlp_layers", "cnn_depth")


def load_model(model: Dreamer | str | Path, role: str) -> Dreamer:
    """``model`` itself, or the Dreamer saved at that path (a :class:`UsageError` if there is no such file).

    :param model: a Dreamer or the path of its zip
    :param role: what the model is, for the error message
    """
    if isinstance(model, Dreamer):
        return model
    path = Path(model)
    if not (path.exists() or path.with_suffix(".zip").exists()):
        raise UsageError(f"{role} model file {str(path)!r} does not exist")
    return Dreamer.load(path, device="cpu")


def output_prefix(policy: DreamerPolicy, module: str) -> str:
    """Parameter-name prefix of the output layer (the last ``nn.Linear``) of one of the policy's MLPs, e.g. ``actor.6.``.

    A meta-model reward head is not a plain MLP and has no such layer: a prefix that no parameter name starts with is
    returned (its parameters are copied whole if at all).
    """
    mlp = getattr(policy, module)
    if not isinstance(mlp, th.nn.Sequential):
        return "\0"
    return f"{module}.{[name for name, child in mlp.named_children() if isinstance(child, th.nn.Linear)][-1]}."


def check_sizes(source: DreamerPolicy, target: DreamerPolicy) -> None:
    """Raise a :class:`UsageError` naming the first network size in which the two policies differ."""
    for key in _SIZE_KEYS:
        if source.size[key] != target.size[key]:
            raise UsageError(
                f"Cannot transfer: source and target differ in {key} ({source.size[key]} vs {target.size[key]}); "
                "build the target with the source's model_size and size overrides (policy_kwargs)"
            )
    if source.num_bins != target.num_bins:
        raise UsageError(f"Cannot transfer: source and target differ in num_bins ({source.num_bins} vs {target.num_bins})")


def check_compatible(source: DreamerPolicy, target: DreamerPolicy, modules: Sequence[str]) -> None:
    """Raise a :class:`UsageError` naming the first reason why ``modules`` of the source cannot go into the target."""
    check_sizes(source, target)
    if type(source.action_space) is not type(target.action_space):
        raise UsageError(
            f"Cannot transfer: source actions are {type(source.action_space).__name__}, target actions "
            f"{type(target.action_space).__name__}"
        )
    if {"encoder", "decoder", "rssm"} & set(modules):  # channels may be cut; the image size sets the embedding's size
        for key, spec in target.codec.image_specs.items():
            source_spec = source.codec.image_specs.get(key)
            if source_spec is not None and source_spec.chw[1:] != spec.chw[1:]:
                raise UsageError(
                    f"Cannot transfer the encoder, decoder or sequence model: image {key!r} is {source_spec.chw[1:]} "
                    f"(height, width) in the source and {spec.chw[1:]} in the target; resize the target's images"
                )
    dims, source_dims = target.codec.vector_dims, source.codec.vector_dims
    if {"encoder", "decoder"} & set(modules) and max(len(dims), len(source_dims)) > 1 and dims != source_dims:
        raise UsageError(
            f"Cannot transfer the encoder/decoder: the vector parts of the Dict observations differ ({source_dims} in "
            f"the source, {dims} in the target); only a single vector observation can be cut to fewer dimensions"
        )
    names = [name for name, _ in target.named_parameters() if module_of(name) in modules]
    missing = sorted(set(names) - set(source.state_dict()))
    if missing:
        raise UsageError(
            f"Cannot transfer: the source has no {missing[:4]} (observation layouts differ: different Dict keys, or "
            "images against vectors; or a meta-model reward head on one side only)"
        )


def _cut(name: str, src: th.Tensor, shape: th.Size) -> th.Tensor:
    """The source tensor cut to the target's shape, or a UsageError if it is smaller in some dimension."""
    if src.shape == shape:
        return src
    if src.dim() != len(shape) or any(s < t for s, t in zip(src.shape, shape, strict=True)):
        raise UsageError(
            f"Cannot transfer {name}: source shape {tuple(src.shape)} is smaller than the target's {tuple(shape)} "
            "(a target with more observation dimensions than the source: pad the target's observations to the "
            "source's size with sb3_dreamer.transfer.PadObservation or MultiTaskVecEnv)"
        )
    return src[tuple(slice(0, n) for n in shape)]


def _check_names(names: Sequence[str], argument: str) -> None:
    unknown = sorted(set(names) - set(MODULES))
    if unknown:
        raise UsageError(f"Unknown module name(s) {unknown} in {argument}; choose from {sorted(MODULES)}")


def modular_transfer(
    source: Dreamer | str | Path,
    target: Dreamer,
    reinit: Sequence[str] = (),
    fraction: float = 0.2,
    copy_modules: Sequence[str] | None = None,
) -> Dreamer:
    """Copy a source Dreamer's modules into ``target`` by the fractional-transfer rules, leaving ``reinit`` at init.

    :param source: the trained source model, or the path of its saved zip
    :param target: a freshly built target model (its current parameters are the "fresh initialisation")
    :param reinit: names of :data:`MODULES` left at the target's initialisation (fraction 0)
    :param fraction: the ``fraction`` of the reward-head and critic output layers (the paper's omega)
    :param copy_modules: if given, the modules to transfer; every other module is left at init (overrides ``reinit``
        for the modules it does not name; a module may not be in both lists)
    :return: ``target``, modified in place, with fresh optimiser state
    """
    _check_names(reinit, "reinit")
    if copy_modules is not None:
        _check_names(copy_modules, "copy_modules")
        both = sorted(set(copy_modules) & set(reinit))
        if both:
            raise UsageError(f"Module(s) {both} are in both copy_modules and reinit")
        reinit = [name for name in MODULES if name not in copy_modules]
    if not 0.0 <= fraction:
        raise UsageError(f"fraction must be >= 0, got {fraction}")
    source_model = load_model(source, "source")
    src_policy, tgt_policy = source_model.policy, target.policy
    check_compatible(src_policy, tgt_policy, [name for name in MODULES if name not in reinit])
    src_state = {k: v.detach().to("cpu") for k, v in src_policy.state_dict().items()}
    for name, _ in tgt_policy.named_parameters():
        if module_of(name) not in (None, *reinit) and not th.isfinite(src_state[name]).all():
            raise UsageError(f"Cannot transfer: the source's {name} holds NaN or infinite values (a diverged model?)")
    fractional = (output_prefix(tgt_policy, "reward_head"), output_prefix(tgt_policy, "critic"))
    fresh = output_prefix(tgt_policy, "actor")
    stoch_dim = tgt_policy.rssm.stoch_dim
    with th.no_grad():
        for name, param in tgt_policy.named_parameters():
            module = module_of(name)
            if module is None or module in reinit or name.startswith(fresh):
                continue
            src = src_state[name]
            if name == "rssm.img_in.0.weight":  # columns: [z_{t-1} (stoch_dim), a_{t-1} (action dims)]
                param[:, :stoch_dim].copy_(src[: param.shape[0], :stoch_dim])
            elif name.startswith(fractional):
                param.add_(fraction * _cut(name, src, param.shape).to(param.device))
            else:
                param.copy_(_cut(name, src, param.shape).to(param.device))
        tgt_policy.slow_critic.load_state_dict(copy.deepcopy(tgt_policy.critic.state_dict()))
    for optimizer in (tgt_policy.world_model_optimizer, tgt_policy.actor_optimizer, tgt_policy.critic_optimizer):
        optimizer.state = defaultdict(dict)
    return target


def fractional_transfer(source: Dreamer | str | Path, target: Dreamer, fraction: float = 0.2) -> Dreamer:
    """Fractional transfer (Sasso et al., TMLR 2023): the whole source except the rules' exceptions (module docstring).

    :param source: the trained source model (e.g. a multi-task agent), or the path of its saved zip
    :param target: a freshly built target model with the source's network sizes
    :param fraction: omega of ``W = W_init + omega * W_source`` for the reward-head and critic output layers (paper: 0.2)
    :return: ``target``, modified in place, with fresh optimiser state
    """
    return modular_transfer(source, target, reinit=(), fraction=fraction)
