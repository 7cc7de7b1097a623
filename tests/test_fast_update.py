"""The fast update computes the same update as the plain formulas (DreamerV3's equations written out directly).

The fast path replaces some ops by cheaper ones with the same maths: the two-hot loss gathers two log-probabilities
instead of building (..., 255) one-hots, the two-hot mean is a matrix product, the unimix softmax over few classes runs
on a transposed view, the one-hot sample is a comparison with the maximum, with dynamics gradients the critic's weights
are frozen during imagination, the critic's two two-hot losses share one ``log_softmax`` and, with likelihood-ratio
gradients, one critic pass gives both the imagined values and the critic's loss. Here one update from the same state
and batch is run both ways, and the losses, gradient norms and every parameter afterwards must agree.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import numpy as np
import pytest
import torch as th
import torch.nn.functional as F

import sb3_dreamer.dreamer.heads as heads_module
import sb3_dreamer.dreamer.policies as policies_module
import sb3_dreamer.dreamer.update as update_module
import sb3_dreamer.dreamer.world_model as world_model_module
from sb3_dreamer import Dreamer, DreamerPolicy
from sb3_dreamer.dreamer.distributions import gumbel_noise, symexp, symlog, twohot_encode
from tests.conftest import tiny


def plain_twohot_loss(logits: th.Tensor, target: th.Tensor, bins: th.Tensor) -> th.Tensor:
    return -(twohot_encode(symlog(target), bins) * logits.log_softmax(-1)).sum(-1)


def plain_twohot_nll(log_probs: th.Tensor, target: th.Tensor, bins: th.Tensor) -> th.Tensor:
    return -(twohot_encode(symlog(target), bins) * log_probs).sum(-1)


def plain_twohot_mean(logits: th.Tensor, bins: th.Tensor) -> th.Tensor:
    return symexp((logits.softmax(-1) * bins).sum(-1))


def plain_unimix_logits(logits: th.Tensor, unimix: float) -> th.Tensor:
    return ((1.0 - unimix) * logits.softmax(-1) + unimix / logits.shape[-1]).log()


def plain_sample_onehot(log_probs: th.Tensor, straight_through: bool = True, noise: th.Tensor | None = None) -> th.Tensor:
    if noise is None:
        noise = gumbel_noise(log_probs.shape, log_probs.device)
    sample = F.one_hot((log_probs.detach() + noise).argmax(-1), log_probs.shape[-1]).to(log_probs.dtype)
    if straight_through:
        probs = log_probs.exp()
        sample = sample + probs - probs.detach()
    return sample


@contextlib.contextmanager
def plain_imagination_context(policy: DreamerPolicy, dynamics_grad: bool) -> Iterator[None]:
    """Freeze the world model only (the critic's weights keep requires_grad, as before the fast path)."""
    if not dynamics_grad:
        with th.no_grad():
            yield
        return
    with update_module.frozen(policy.world_model_parameters()):
        yield


PLAIN = {
    (heads_module, "twohot_loss"): plain_twohot_loss,
    (heads_module, "twohot_nll"): plain_twohot_nll,
    (heads_module, "twohot_mean"): plain_twohot_mean,
    (policies_module, "unimix_logits"): plain_unimix_logits,
    (policies_module, "sample_onehot"): plain_sample_onehot,
    (world_model_module, "unimix_logits"): plain_unimix_logits,
    (world_model_module, "sample_onehot"): plain_sample_onehot,
    (update_module, "imagination_context"): plain_imagination_context,
}


def one_update(model: Dreamer, state: dict, seed: int) -> tuple[dict[str, th.Tensor], dict[str, float]]:
    """Restore ``state``, run one update with fixed random streams, return the parameters and the logged values."""
    model.policy.load_state_dict(state["policy"])
    for name in ("world_model_optimizer", "actor_optimizer", "critic_optimizer"):
        getattr(model.policy, name).load_state_dict(copy.deepcopy(state[name]))
    logged: dict[str, float] = {}
    model.logger.record = lambda key, value, exclude=None: logged.__setitem__(key, value)  # type: ignore[method-assign]
    np.random.seed(seed)
    th.manual_seed(seed)
    model.train(1, model.batch_size)
    params = {key: value.detach().clone() for key, value in model.policy.state_dict().items()}
    return params, logged


@pytest.mark.parametrize("actor_grad", ["reinforce", "dynamics"])
def test_fast_update_equals_plain_update(actor_grad: str, monkeypatch) -> None:
    th.set_num_threads(1)
    model = Dreamer("MlpPolicy", "Pendulum-v1", seed=0, actor_grad=actor_grad, **tiny(learning_starts=200))
    model.learn(200)  # fills the buffer, no update yet
    model.learning_starts = 0
    state = {"policy": copy.deepcopy(model.policy.state_dict())}
    for name in ("world_model_optimizer", "actor_optimizer", "critic_optimizer"):
        state[name] = copy.deepcopy(getattr(model.policy, name).state_dict())

    fast_params, fast_logged = one_update(model, state, seed=3)
    with monkeypatch.context() as patch:
        for (owner, name), function in PLAIN.items():
            patch.setattr(owner, name, function)
        plain_params, plain_logged = one_update(model, state, seed=3)

    for key in (
        "world_model_loss",
        "actor_loss",
        "critic_loss",
        "world_model_grad_norm",
        "actor_grad_norm",
        "critic_grad_norm",
    ):
        assert fast_logged[f"train/{key}"] == pytest.approx(plain_logged[f"train/{key}"], rel=1e-4, abs=1e-6), key
    changed = 0
    for key, value in plain_params.items():
        th.testing.assert_close(fast_params[key], value, rtol=1e-4, atol=1e-6, msg=key)
        changed += int(not th.equal(value, state["policy"][key]))
    assert changed > 10  # the update did move the weights (the comparison is not between two no-ops)
