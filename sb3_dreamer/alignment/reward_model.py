"""Small MLP reward model r(obs), regressed on (observation, label) pairs produced by DTW alignment.

Layout: observations are ``(batch, obs_dim)``; labels and predictions are ``(batch,)``.

Training runs in torch; :meth:`RewardModel.predict` runs the same network in numpy on a copy of the weights taken
after each fit, because a single-observation torch call costs tens of microseconds of dispatch overhead, several times
the cost of the three small matrix products (the wrapper calls ``predict`` on every environment step).
"""

import math
import time
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch as th
from stable_baselines3.common.running_mean_std import RunningMeanStd
from torch import nn

from sb3_dreamer.alignment.scaling import observation_scale

_OBS_CLIP = 10.0


class FitResult(NamedTuple):
    """Outcome of one :meth:`RewardModel.fit` call.

    :param n_steps: gradient steps taken
    :param loss: mean squared error (in normalised label units) of the last step, nan if no step was taken
    :param elapsed: wall-clock seconds spent
    :param truncated: True if the time budget stopped the fit before ``max_steps``
    """

    n_steps: int
    loss: float
    elapsed: float
    truncated: bool


class RewardModel:
    """MLP reward model r(obs) trained by mean-squared-error regression.

    Inputs are standardised with running statistics of the reference observations (``update_statistics``) and clipped
    to ±10, as SB3's ``VecNormalize`` does; the scale of each dimension is :attr:`obs_scale`, the rule the DTW alignment
    uses too (:func:`~sb3_dreamer.alignment.scaling.observation_scale`: std, or 1 for a (near-)constant dimension).
    Labels are standardised with the statistics of the data of each fit; when those change, the output layer is
    rescaled so that predictions are preserved ("preserving outputs precisely" of Pop-Art, van Hasselt et al., 2016,
    https://arxiv.org/abs/1602.07714).

    Determinism: initial weights come from ``seed`` inside :func:`torch.random.fork_rng` (the global torch RNG is left
    untouched) and minibatches from a private :class:`torch.Generator`; torch's thread settings are not changed.

    :param obs_dim: observation dimension
    :param net_arch: hidden layer widths (tanh activations)
    :param learning_rate: Adam learning rate
    :param batch_size: minibatch size (capped by the number of samples)
    :param seed: seed for initial weights and minibatch sampling; None draws one from OS entropy
    """

    def __init__(
        self,
        obs_dim: int,
        net_arch: Sequence[int] = (64, 64),
        learning_rate: float = 1e-3,
        batch_size: int = 256,
        seed: int | None = None,
    ) -> None:
        if obs_dim < 1:
            raise ValueError(f"obs_dim must be positive, got {obs_dim}")
        self.obs_dim = int(obs_dim)
        self.net_arch = tuple(int(width) for width in net_arch)
        self.learning_rate = float(learning_rate)
        self.batch_size = int(batch_size)
        self.seed = int(np.random.SeedSequence().generate_state(1)[0]) if seed is None else int(seed)
        # No prior count: after the first update the statistics are exactly those of the data (the default prior of
        # 1e-4 pseudo-observations at mean 0, var 1 gives a constant dimension a spurious std of ~1e-2 / sqrt(N)).
        self.obs_rms = RunningMeanStd(epsilon=0.0, shape=(self.obs_dim,))
        self.label_mean = 0.0
        self.label_std = 1.0
        self.n_updates = 0
        layers: list[nn.Module] = []
        width_in = self.obs_dim
        with th.random.fork_rng(devices=[]):
            th.manual_seed(self.seed)
            for width in self.net_arch:
                layers += [nn.Linear(width_in, width), nn.Tanh()]
                width_in = width
            layers.append(nn.Linear(width_in, 1))
            self.net = nn.Sequential(*layers)
        # foreach: one batched update of all parameters, ~15 % faster per step than the per-tensor loop on CPU.
        self.optimizer = th.optim.Adam(self.net.parameters(), lr=self.learning_rate, foreach=True)
        self.generator = th.Generator().manual_seed(self.seed)
        self._refresh_numpy_weights()

    def _refresh_numpy_weights(self) -> None:
        linears = [module for module in self.net if isinstance(module, nn.Linear)]
        weights = [
            (m.weight.detach().numpy().T.astype(np.float64), m.bias.detach().numpy().astype(np.float64)) for m in linears
        ]
        # Fold the input standardisation into the first layer and clip in raw units, so the per-step numpy pass is
        # clip -> (matmul + bias -> tanh) x layers: W' = diag(1/std) W, b' = b - (mean/std) W,
        # clip((x - mean)/std, -c, c) == (clip(x, mean - c std, mean + c std) - mean)/std.
        std = self.obs_scale
        first_weight, first_bias = weights[0]
        weights[0] = (first_weight / std[:, None], first_bias - (self.obs_rms.mean / std) @ first_weight)
        # Fold the label de-standardisation into the output layer: r = label_std * (h W + b) + label_mean.
        last_weight, last_bias = weights[-1]
        weights[-1] = (last_weight * self.label_std, last_bias * self.label_std + self.label_mean)
        self._weights = [(w.astype(np.float32), b.astype(np.float32)) for w, b in weights]
        self._obs_low32 = (self.obs_rms.mean - _OBS_CLIP * std).astype(np.float32)
        self._obs_high32 = (self.obs_rms.mean + _OBS_CLIP * std).astype(np.float32)
        self._ones32 = np.ones(self.obs_dim, dtype=np.float32)
        self._last_weight32 = np.ascontiguousarray(self._weights[-1][0][:, 0])
        self._last_bias = float(self._weights[-1][1][0])

    @property
    def obs_scale(self) -> np.ndarray:
        """``(obs_dim,)`` float64 input scale: :func:`~sb3_dreamer.alignment.scaling.observation_scale` of the running
        standard deviation (1 for a (near-)constant dimension, as in the DTW alignment)."""
        return observation_scale(np.sqrt(np.maximum(self.obs_rms.var, 0.0)), self.obs_rms.mean)

    def _check_obs(self, obs: np.ndarray, dtype: type = np.float64) -> np.ndarray:
        batch = np.asarray(obs, dtype=dtype)
        if batch.ndim != 2 or batch.shape[1] != self.obs_dim:
            raise ValueError(f"expected observations of shape (batch, {self.obs_dim}), got {batch.shape}")
        if not np.all(np.isfinite(batch)):
            raise ValueError("observations contain NaN or infinite values")
        return batch

    def update_statistics(self, obs: np.ndarray) -> None:
        """Update the running input statistics with a batch of (reference) observations.

        :param obs: ``(batch, obs_dim)`` observations, at least one
        """
        batch = self._check_obs(obs)
        if len(batch) == 0:
            raise ValueError("update_statistics needs at least one observation")
        self.obs_rms.update(batch)
        self._refresh_numpy_weights()

    def predict(self, obs: np.ndarray) -> np.ndarray:
        """Predicted rewards, deterministic (no sampling, no dropout).

        :param obs: ``(batch, obs_dim)`` or a single ``(obs_dim,)`` observation
        :return: float64 array of shape ``(batch,)``, or a numpy float64 scalar for a single observation
        """
        batch = np.asarray(obs, dtype=np.float32)
        if batch.shape == (self.obs_dim,):
            return self._predict_one(batch)
        if batch.ndim != 2 or batch.shape[1] != self.obs_dim:
            raise ValueError(f"expected observations of shape (batch, {self.obs_dim}), got {np.shape(obs)}")
        # One reduction instead of isfinite().all(): NaN and inf propagate into the float64 sum.
        if not math.isfinite(np.add.reduce(batch, axis=None, dtype=np.float64)):
            raise ValueError("observation contains NaN or infinite values (reward model input)")
        weight, bias = self._weights[-1]
        out = self._last_hidden(batch) @ weight
        out += bias
        return out[:, 0].astype(np.float64)

    def _last_hidden(self, obs: np.ndarray) -> np.ndarray:
        """Clip the raw float32 input (standardisation is folded into the first layer), then the tanh hidden layers."""
        hidden = np.minimum(obs, self._obs_high32)
        np.maximum(hidden, self._obs_low32, out=hidden)
        for weight, bias in self._weights[:-1]:
            hidden = hidden @ weight
            hidden += bias
            np.tanh(hidden, out=hidden)
        return hidden

    def _predict_one(self, obs: np.ndarray) -> np.float64:
        """:meth:`predict` of one ``(obs_dim,)`` float32 observation with 1-D products (called on every env step).

        Every numpy call on a vector this small costs about a microsecond of dispatch, so this path makes as few as
        possible: the finiteness check is one dot product with a ones vector (NaN or inf in, non-finite out).
        """
        if not math.isfinite(obs @ self._ones32):
            raise ValueError("observation contains NaN or infinite values (reward model input)")
        return np.float64(self._last_hidden(obs) @ self._last_weight32 + self._last_bias)

    def _set_label_statistics(self, labels: np.ndarray) -> None:
        new_mean = float(labels.mean())
        new_std = float(labels.std())
        new_std = new_std if new_std > 1e-6 else 1.0
        last = self.net[-1]
        with th.no_grad():
            # Pop-Art output preservation: sigma' W' = sigma W and sigma' b' + mu' = sigma b + mu.
            last.weight.mul_(self.label_std / new_std)
            last.bias.mul_(self.label_std).add_(self.label_mean - new_mean).div_(new_std)
        self.label_mean, self.label_std = new_mean, new_std

    def fit(
        self,
        obs: np.ndarray,
        labels: np.ndarray,
        budget_seconds: float | None = None,
        max_steps: int | None = None,
    ) -> FitResult:
        """Regress the model on ``(obs, labels)`` with Adam minibatch steps.

        With ``max_steps`` the number of steps is exactly ``max_steps`` unless the time budget runs out first: the
        budget only truncates, so runs are reproducible whenever the budget is not hit (``FitResult.truncated`` tells).
        Without ``max_steps`` the fit runs until the budget is spent (not reproducible).

        :param obs: ``(N, obs_dim)`` observations
        :param labels: ``(N,)`` targets
        :param budget_seconds: wall-clock limit, None for no limit
        :param max_steps: gradient-step cap, None for no cap
        :return: summary of the fit
        """
        if budget_seconds is None and max_steps is None:
            raise ValueError("fit needs budget_seconds, max_steps or both")
        batch = self._check_obs(obs, np.float32)  # no copy for the rewarder's float32 label store
        targets = np.asarray(labels, dtype=np.float64).reshape(-1)
        if len(targets) != len(batch) or len(batch) == 0:
            raise ValueError(f"need as many labels as observations (> 0), got {len(targets)} labels, {len(batch)} obs")
        if not np.all(np.isfinite(targets)):
            raise ValueError("labels contain NaN or infinite values")
        start = time.perf_counter()
        self._set_label_statistics(targets)
        # Inputs are standardised and clipped per minibatch (as predict does), not for the whole store at every fit.
        x = th.as_tensor(batch)
        mean = th.as_tensor(self.obs_rms.mean, dtype=th.float32)
        std = th.as_tensor(self.obs_scale, dtype=th.float32)
        y = th.as_tensor(((targets - self.label_mean) / self.label_std).astype(np.float32))
        batch_size = min(self.batch_size, len(x))
        n_steps, loss_value, truncated = 0, float("nan"), False
        while max_steps is None or n_steps < max_steps:
            if budget_seconds is not None and time.perf_counter() - start >= budget_seconds:
                truncated = max_steps is not None
                break
            indices = th.randint(len(x), (batch_size,), generator=self.generator)
            inputs = x[indices].sub_(mean).div_(std).clamp_(-_OBS_CLIP, _OBS_CLIP)
            loss = nn.functional.mse_loss(self.net(inputs)[:, 0], y[indices])
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            loss_value = float(loss.item())
            n_steps += 1
        self.n_updates += n_steps
        self._refresh_numpy_weights()
        return FitResult(n_steps, loss_value, time.perf_counter() - start, truncated)

    def get_state(self) -> dict[str, np.ndarray]:
        """All state as numpy arrays: weights, Adam moments, normalisation statistics and the sampling RNG.

        :return: flat dict, storable with :func:`numpy.savez`
        """
        state = {
            "net_arch": np.asarray(self.net_arch, dtype=np.int64),
            "obs_mean": self.obs_rms.mean.copy(),
            "obs_var": self.obs_rms.var.copy(),
            "obs_count": np.asarray(self.obs_rms.count, dtype=np.float64),
            "label_stats": np.asarray([self.label_mean, self.label_std], dtype=np.float64),
            "n_updates": np.asarray(self.n_updates, dtype=np.int64),
            "generator": self.generator.get_state().numpy().copy(),
        }
        for name, tensor in self.net.state_dict().items():
            state[f"net.{name}"] = tensor.detach().numpy().copy()
        for index, param in enumerate(self.net.parameters()):
            for key, value in self.optimizer.state.get(param, {}).items():
                state[f"optim.{index}.{key}"] = th.as_tensor(value).detach().numpy().copy()
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore a state produced by :meth:`get_state` (same ``obs_dim`` and ``net_arch``).

        :param state: dict of numpy arrays
        """
        if tuple(np.asarray(state["net_arch"]).tolist()) != self.net_arch:
            raise ValueError(f"state has net_arch {state['net_arch'].tolist()}, this model has {list(self.net_arch)}")
        if np.shape(state["obs_mean"]) != (self.obs_dim,):
            raise ValueError(f"state has obs_dim {np.shape(state['obs_mean'])}, this model has {self.obs_dim}")
        self.obs_rms.mean = np.array(state["obs_mean"], dtype=np.float64)
        self.obs_rms.var = np.array(state["obs_var"], dtype=np.float64)
        self.obs_rms.count = float(state["obs_count"])
        self.label_mean, self.label_std = (float(v) for v in state["label_stats"])
        self.n_updates = int(state["n_updates"])
        self.generator.set_state(th.as_tensor(np.asarray(state["generator"], dtype=np.uint8)))
        self.net.load_state_dict({name: th.as_tensor(state[f"net.{name}"]) for name in self.net.state_dict()})
        optim_state = self.optimizer.state_dict()
        optim_state["state"] = {}
        for index, _ in enumerate(self.net.parameters()):
            prefix = f"optim.{index}."
            entries = {key[len(prefix) :]: th.tensor(value) for key, value in state.items() if key.startswith(prefix)}
            if entries:
                optim_state["state"][index] = entries
        self.optimizer.load_state_dict(optim_state)
        self._refresh_numpy_weights()
