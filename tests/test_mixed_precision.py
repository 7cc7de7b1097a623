"""``mixed_precision=True``: the update's forward passes run in bfloat16, parameters and acting stay float32."""

from __future__ import annotations

import numpy as np
import torch as th
from stable_baselines3.common.logger import configure

from sb3_dreamer import Dreamer
from tests.conftest import tiny


def test_mixed_precision_update_runs_in_bfloat16_and_acting_in_float32() -> None:
    model = Dreamer("MlpPolicy", "Pendulum-v1", seed=0, mixed_precision=True, **tiny(learning_starts=64))
    model.learn(64)  # fills the buffer, no update yet
    model.set_logger(configure(None, []))
    dtypes: list[th.dtype] = []
    for head in (model.policy.reward_head, model.policy.critic):
        head.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    logged: dict[str, float] = {}
    model.logger.record = lambda key, value, exclude=None: logged.__setitem__(key, value)  # type: ignore[method-assign]
    before = {key: value.clone() for key, value in model.policy.state_dict().items()}

    model.train(2, model.batch_size)
    assert dtypes and set(dtypes) == {th.bfloat16}, dtypes
    for key in ("world_model_loss", "actor_loss", "critic_loss"):
        assert np.isfinite(logged[f"train/{key}"]), key
    after = model.policy.state_dict()
    assert all(value.dtype == before[key].dtype for key, value in after.items())
    assert sum(not th.equal(value, before[key]) for key, value in after.items()) > 10  # the update moved the weights

    dtypes.clear()
    obs = model.get_env().reset()
    action, _ = model.predict(obs, state=None, episode_start=np.ones(1, dtype=bool))
    assert action.dtype == np.float32 and dtypes == [], dtypes  # acting runs no heads, and no autocast
    with th.no_grad():
        feat = th.zeros(1, model.policy.rssm.feat_dim)
        assert model.policy.value(feat).dtype == th.float32


def test_mixed_precision_off_keeps_float32() -> None:
    model = Dreamer("MlpPolicy", "CartPole-v1", seed=0, **tiny(learning_starts=64))
    model.learn(64)
    model.set_logger(configure(None, []))
    dtypes: list[th.dtype] = []
    model.policy.critic.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    model.train(1, model.batch_size)
    assert dtypes and set(dtypes) == {th.float32}
