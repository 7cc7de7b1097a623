"""World-model pretraining on other agents' experience, and fine-tuning a new Dreamer from the pretrained model.

Method: "Adapting to the Unfamiliar: Leveraging Latent Space in RL for Cross-Environment Generalization"
(https://github.com/JonaSchulz/pydreamer, DreamerV2; report section 2.4): (1) record other agents' episodes of
several games (:func:`~sb3_dreamer.transfer.record_episodes`); (2) train only the world model on them, offline
(``train_wm_only.py``; :func:`pretrain_world_model`); (3) fine-tune on a new game from the pretrained world model
(``train_finetune.py``; :func:`load_world_model`), optionally with world-model-only updates first and with parts of the
world model frozen. Their findings: full fine-tuning learned fastest; a frozen sequence model (``freeze_rssm``)
learned poorly (high KL, poor imagination). So nothing is frozen by default.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.utils import configure_logger

from sb3_dreamer.common.usage import UsageError
from sb3_dreamer.dreamer import Dreamer
from sb3_dreamer.dreamer.policies import FREEZABLE_MODULES, module_of
from sb3_dreamer.dreamer.update import world_model_step
from sb3_dreamer.transfer.fractional import check_compatible, load_model
from sb3_dreamer.transfer.offline import OfflineDataset

#: Names ``freeze`` accepts: the world model's modules, with the short names of the issue ("reward", "continue").
FREEZE_NAMES: dict[str, str] = {
    **{name: name for name in FREEZABLE_MODULES},
    "reward": "reward_head",
    "continue": "continue_head",
}


def pretrain_world_model(
    model: Dreamer,
    dataset: OfflineDataset | str | Path,
    updates: int,
    log_interval: int = 100,
    checkpoint_freq: int = 0,
    checkpoint_path: str | Path | None = None,
    progress_bar: bool = False,
    tb_log_name: str = "pretrain",
) -> Dreamer:
    """Train only ``model``'s world model on an offline dataset, ``updates`` updates of the model's batch shape.

    Each update is :func:`~sb3_dreamer.dreamer.update.world_model_step` (the loss and optimiser step of ``learn``) on
    ``batch_size`` x ``batch_length`` windows drawn from all episodes as the model's replay draws them (its
    ``replay_buffer_kwargs``: by default a quarter end at a terminal row), games mixed; actor, critic and the
    model's update counter are untouched. The loss terms are logged as ``pretrain/*`` every ``log_interval`` updates
    with the model's logger (TensorBoard under ``tensorboard_log`` if set). Updates done so far are kept in
    ``model.pretrain_updates`` and saved with the model: ``pretrain_world_model(Dreamer.load(checkpoint), dataset,
    updates)`` resumes a run and stops at the same total.

    :param model: a Dreamer whose spaces share the dataset's layout (its env may be the target game)
    :param dataset: the dataset or its folder
    :param updates: total pretraining updates (including those already done)
    :param log_interval: updates between log dumps
    :param checkpoint_freq: save the model every this many updates (0: only at the end, if ``checkpoint_path``)
    :param checkpoint_path: where checkpoints go (one zip, replaced atomically; a ``.zip`` suffix is added if missing)
    :param progress_bar: show a tqdm progress bar
    :param tb_log_name: TensorBoard run name
    :return: ``model``
    """
    if updates < 0 or log_interval < 1 or checkpoint_freq < 0:
        raise UsageError(
            f"updates and checkpoint_freq must be >= 0 and log_interval >= 1, got {updates}, {checkpoint_freq}, {log_interval}"
        )
    if checkpoint_freq and checkpoint_path is None:
        raise UsageError("checkpoint_freq needs a checkpoint_path")
    dataset = dataset if isinstance(dataset, OfflineDataset) else OfflineDataset(dataset)
    buffer = dataset.replay_buffer(
        model.observation_space, model.action_space, device=model.device, **(model.replay_buffer_kwargs or {})
    )
    if not buffer.can_sample(model.batch_length):
        raise UsageError(f"The dataset holds {buffer.size()} rows, fewer than one window of batch_length {model.batch_length}")
    if getattr(model, "_logger", None) is None:
        model.set_logger(configure_logger(model.verbose, model.tensorboard_log, tb_log_name))
    model.pretrain_updates = done = int(getattr(model, "pretrain_updates", 0))
    model.policy.set_training_mode(True)
    bar = _progress(progress_bar, updates, done)
    metrics: dict[str, list[float]] = defaultdict(list)
    try:
        while done < updates:
            _, _, step = world_model_step(model, buffer.sample(model.batch_size, model.batch_length))
            for key, value in step.items():
                metrics[key].append(value)
            done = model.pretrain_updates = done + 1
            if bar is not None:
                bar.update(1)
            if done % log_interval == 0 or done == updates:
                for key, values in metrics.items():
                    model.logger.record(f"pretrain/{key}", float(np.mean(values)))
                model.logger.record("pretrain/updates", done)
                model.logger.dump(step=done)
                metrics.clear()
            if checkpoint_freq and done % checkpoint_freq == 0:
                _save_atomic(model, checkpoint_path)
    finally:
        if bar is not None:
            bar.close()
        model.policy.set_training_mode(False)
    if checkpoint_path is not None:
        _save_atomic(model, checkpoint_path)
    return model


def _progress(enabled: bool, total: int, initial: int) -> Any:  # a tqdm bar (tqdm is optional) or None
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise UsageError("progress_bar=True needs tqdm (pip install tqdm)") from None
    return tqdm(total=total, initial=initial, desc="world-model pretraining")


def _save_atomic(model: Dreamer, path: str | Path) -> None:
    """Save to a temporary file first, so that an interrupted save never destroys the previous checkpoint."""
    path = Path(path).with_suffix(".zip")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.zip")
    model.save(tmp)
    tmp.replace(path)


def freeze_modules(names: Sequence[str]) -> tuple[str, ...]:
    """Map ``freeze`` names (:data:`FREEZE_NAMES`) to the policy's module names; a :class:`UsageError` for unknown ones."""
    if isinstance(names, str):
        names = (names,)
    unknown = sorted(set(names) - set(FREEZE_NAMES))
    if unknown:
        raise UsageError(f"Unknown freeze name(s) {unknown}; choose from {sorted(FREEZE_NAMES)}")
    modules = tuple(dict.fromkeys(FREEZE_NAMES[name] for name in names))
    if len(modules) == len(FREEZABLE_MODULES):
        raise UsageError("Freezing the whole world model leaves it nothing to fine-tune; freeze fewer parts")
    return modules


def load_world_model(
    model: Dreamer,
    source: Dreamer | str | Path,
    freeze: Sequence[str] = (),
    world_model_warmup: int | None = None,
) -> Dreamer:
    """Start ``model`` from a pretrained world model: copy the source's encoder, decoder, sequence model (RSSM),
    reward and continue heads; actor and critic keep their fresh initialisation (pydreamer ``train_finetune.py``).

    :param model: a fresh Dreamer of the source's sizes, on the new game (same observation layout and action width)
    :param source: the pretrained Dreamer, or the path of its zip
    :param freeze: world-model parts that stay as loaded (any of ``"encoder"``, ``"rssm"``, ``"decoder"``,
        ``"reward"``, ``"continue"``; default nothing, as the paper's findings advise). Frozen parts get no gradient,
        are in no optimiser and are saved as frozen with the model
    :param world_model_warmup: if given, the next this many updates of ``model`` train only the world model before
        actor and critic start (pydreamer's ``n_steps_wm``); sets ``model.world_model_warmup``
    :return: ``model``, with a fresh world-model optimiser
    """
    modules = freeze_modules(freeze)
    if world_model_warmup is not None and world_model_warmup < 0:
        raise UsageError(f"world_model_warmup must be >= 0, got {world_model_warmup}")
    src = load_model(source, "pretrained world-model").policy
    policy = model.policy
    check_compatible(src, policy, list(FREEZABLE_MODULES))
    src_state = src.state_dict()
    names = [name for name, _ in policy.named_parameters() if module_of(name) in FREEZABLE_MODULES]
    for name in names:
        target_shape, source_shape = policy.get_parameter(name).shape, src_state[name].shape
        if source_shape != target_shape:
            raise UsageError(
                f"The pretrained world model is of another size: {name} is {tuple(source_shape)} there and "
                f"{tuple(target_shape)} here (observation layout or action width differ; record the dataset in the "
                "target's layout, e.g. MinAtar -v0 ids with MinAtarCategorical)"
            )
        if not th.isfinite(src_state[name]).all():
            raise UsageError(f"The pretrained world model's {name} holds NaN or infinite values (a diverged model?)")
    with th.no_grad():
        for name in names:
            policy.get_parameter(name).copy_(src_state[name])
    policy.freeze(modules)  # also builds a fresh world-model optimiser
    model.policy_kwargs = {**model.policy_kwargs, "frozen_modules": modules}  # rebuilt frozen by Dreamer.load
    if world_model_warmup is not None:
        model.world_model_warmup = model._n_updates + int(world_model_warmup)
    return model
