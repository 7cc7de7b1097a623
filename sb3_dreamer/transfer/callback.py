"""Start a training run from a transferred model: a callback that applies a transfer before the first step.

Methods: fractional, modular and meta-model transfer (:mod:`sb3_dreamer.transfer.fractional`,
:mod:`sb3_dreamer.transfer.meta_model`) and fine-tuning from a pretrained world model
(:func:`~sb3_dreamer.transfer.load_world_model`).

For rl-zoo (``sb3-dreamer train``), where the model is built from a YAML entry: the entry's ``callback`` key names
:class:`TransferCallback` with the method and its sources (see ``zoo_configs/transfer/``), and the run trains the
transferred target. In Python, call :func:`~sb3_dreamer.transfer.fractional_transfer` and the others directly.
"""

from __future__ import annotations

from collections.abc import Sequence

from stable_baselines3.common.callbacks import BaseCallback

from sb3_dreamer.common.usage import UsageError
from sb3_dreamer.dreamer import Dreamer
from sb3_dreamer.transfer.fractional import modular_transfer
from sb3_dreamer.transfer.meta_model import meta_model_transfer
from sb3_dreamer.transfer.pretrain import load_world_model

#: Transfer methods of :class:`TransferCallback`.
METHODS = ("fractional", "modular", "meta_model", "world_model")


class TransferCallback(BaseCallback):
    """Apply fractional, modular or meta-model transfer, or load a pretrained world model, when the model's training
    starts (once: not when a run that has already taken steps continues).

    :param method: "fractional", "modular", "meta_model" or "world_model"
    :param source: path of the source model's zip (fractional, modular; for meta_model the UFS source; for world_model
        the pretrained model)
    :param fraction: omega of the reward-head and critic output layers (fractional, modular)
    :param reinit: modules left at init (modular)
    :param copy_modules: modules to transfer, all others left at init (modular)
    :param reward_sources: paths of the source agents whose reward heads the target reads (meta_model)
    :param freeze: world-model parts kept as loaded (world_model; see :func:`~sb3_dreamer.transfer.load_world_model`)
    :param world_model_warmup: updates that train only the world model before actor and critic start (world_model)
    :param verbose: print what was transferred
    """

    def __init__(
        self,
        method: str,
        source: str,
        fraction: float = 0.2,
        reinit: Sequence[str] = (),
        copy_modules: Sequence[str] | None = None,
        reward_sources: Sequence[str] = (),
        freeze: Sequence[str] = (),
        world_model_warmup: int | None = None,
        verbose: int = 1,
    ) -> None:
        super().__init__(verbose)
        if method not in METHODS:
            raise UsageError(f"TransferCallback: unknown method {method!r}; choose one of {list(METHODS)}")
        if method == "meta_model" and not reward_sources:
            raise UsageError("TransferCallback: method 'meta_model' needs the reward_sources paths")
        if method != "meta_model" and reward_sources:
            raise UsageError(f"TransferCallback: reward_sources applies to 'meta_model' only, not {method!r}")
        if method == "fractional" and (reinit or copy_modules is not None):
            raise UsageError("TransferCallback: reinit and copy_modules belong to method 'modular'")
        if method != "world_model" and (freeze or world_model_warmup is not None):
            raise UsageError("TransferCallback: freeze and world_model_warmup belong to method 'world_model'")
        self.method, self.source, self.fraction = method, source, fraction
        self.freeze, self.world_model_warmup = tuple(freeze), world_model_warmup
        self.reinit, self.copy_modules, self.reward_sources = tuple(reinit), copy_modules, list(reward_sources)

    def _on_training_start(self) -> None:
        if self.model.num_timesteps > 0:
            return
        if not isinstance(self.model, Dreamer):
            raise UsageError(f"TransferCallback transfers into a Dreamer, not a {type(self.model).__name__}")
        if self.method == "world_model":
            load_world_model(self.model, self.source, self.freeze, self.world_model_warmup)
        elif self.method == "meta_model":
            meta_model_transfer(self.source, self.reward_sources, self.model)
        else:
            modular_transfer(self.source, self.model, self.reinit, self.fraction, self.copy_modules)
        if self.verbose:
            print(
                f"Transferred ({self.method}) from {self.source}"
                + (f" and {self.reward_sources}" if self.reward_sources else "")
            )

    def _on_step(self) -> bool:
        return True
