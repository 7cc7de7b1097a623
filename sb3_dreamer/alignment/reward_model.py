"""Small MLP reward model r(obs), regressed on (observation, label) pairs produced by DTW alignment.

Layout: observations are ``(batch, obs_dim)``; labels and predictions are ``(batch,)``.

Training runs in torch; :meth:`RewardModel.predict` runs the same network in numpy (:class:`Predictor`, a copy of the
weights taken after each fit), because a single-observation torch call costs tens of microseconds of dispatch overhead,
several times the cost of the three small matrix products (the wrapper calls ``predict`` on every environment step).
"""

import math
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch as th
from stable_baselines3.common.running_mean_std import RunningMeanStd
from torch import nn

from sb3_dreamer.alignment.scaling import observation_scale

_OBS_CLIP = 10.0
# Bound once: the per-step path calls them without attribute lookups.
_dot, _tanh, _minimum, _maximum = np.dot, np.tanh, np.minimum, np.maximum


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


class Predictor:
    """The reward model's forward pass in numpy, input standardisation and label scale folded into the weights.

    ``clip(x, obs_low, obs_high)``, then ``tanh(h W + b)`` for every hidden layer and ``h W + b`` for the output layer,
    in float32. Picklable and small (the background rewarder sends it between processes). A single observation takes
    a path with as few numpy calls as possible (each costs about a microsecond on a vector this small, and the wrapper
    predicts on every environment step): the bias is folded into the matrix product (a constant 1 appended to the
    input, transposed weights) and the products write into preallocated buffers, so one ``Predictor`` must not be used
    from two threads at once.

    :param layers: ``[(weight (in, out), bias (out,)), ...]`` with the standardisation folded in, output width 1 last
    :param obs_low: ``(obs_dim,)`` lower clip bound in raw units
    :param obs_high: ``(obs_dim,)`` upper clip bound in raw units
    """

    def __init__(self, layers: Sequence[tuple[np.ndarray, np.ndarray]], obs_low: np.ndarray, obs_high: np.ndarray) -> None:
        self.layers = [(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in layers]
        self.obs_low = np.asarray(obs_low, np.float32)
        self.obs_high = np.asarray(obs_high, np.float32)
        self.obs_dim = len(self.obs_low)
        self._ones = np.ones(self.obs_dim, dtype=np.float32)
        # Single-observation path: [W; b]^T per layer; each buffer ends with the constant 1 the next layer's bias needs.
        self._folded = [np.ascontiguousarray(np.vstack([w, b[None]]).T) for w, b in self.layers]
        self._buffers = [np.ones(len(w) + 1, dtype=np.float32) for w, _ in self.layers]
        self._views = [buffer[:-1] for buffer in self._buffers]
        self._last = np.ascontiguousarray(self._folded[-1][0])
        self._hidden_steps = list(zip(self._folded[:-1], self._buffers[1:], self._views[1:], strict=True))

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        # Rebuilt from the weights: a pickled view would no longer share memory with its buffer.
        return Predictor, (self.layers, self.obs_low, self.obs_high)

    def arrays(self) -> dict[str, np.ndarray]:
        """The weights and clip bounds as a flat dict of arrays (:meth:`from_arrays` rebuilds the predictor)."""
        state = {"obs_low": self.obs_low, "obs_high": self.obs_high}
        for index, (weight, bias) in enumerate(self.layers):
            state[f"layer{index}.weight"], state[f"layer{index}.bias"] = weight, bias
        return state

    @classmethod
    def from_arrays(cls, state: dict[str, np.ndarray]) -> "Predictor":
        """Rebuild a predictor from :meth:`arrays`."""
        n_layers = sum(1 for key in state if key.endswith(".weight"))
        layers = [(state[f"layer{i}.weight"], state[f"layer{i}.bias"]) for i in range(n_layers)]
        return cls(layers, state["obs_low"], state["obs_high"])

    def predict(self, obs: np.ndarray) -> np.ndarray:
        """Predicted rewards.

        :param obs: ``(batch, obs_dim)`` or a single ``(obs_dim,)`` observation
        :return: float64 array of shape ``(batch,)``, or a numpy float64 scalar for a single observation
        :raises ValueError: on a wrong shape, or NaN or infinite values
        """
        batch = np.asarray(obs, dtype=np.float32)
        if batch.shape == (self.obs_dim,):
            return np.float64(self.predict_row(batch))
        if batch.ndim != 2 or batch.shape[1] != self.obs_dim:
            raise ValueError(f"expected observations of shape (batch, {self.obs_dim}), got {np.shape(obs)}")
        # One reduction instead of isfinite().all(): NaN and inf propagate into the float64 sum.
        if not math.isfinite(np.add.reduce(batch, axis=None, dtype=np.float64)):
            raise ValueError("observation contains NaN or infinite values (reward model input)")
        hidden = np.minimum(batch, self.obs_high)
        np.maximum(hidden, self.obs_low, out=hidden)
        for weight, bias in self.layers[:-1]:
            hidden = hidden @ weight
            hidden += bias
            np.tanh(hidden, out=hidden)
        weight, bias = self.layers[-1]
        out = hidden @ weight
        out += bias
        return out[:, 0].astype(np.float64)

    def predict_row(self, obs: np.ndarray) -> float:
        """Reward of one observation, the wrappers' per-step path: no conversion and no shape check.

        Every numpy call on a vector this small costs about a microsecond, and several times that right after a
        physics step has evicted the caches, so this path makes as few calls as possible: the finiteness check is one
        dot product with a ones vector (NaN or inf in, non-finite out), biases are folded into the products.

        :param obs: C-contiguous float32 array of shape ``(obs_dim,)`` (the caller's guarantee)
        :return: the reward
        :raises ValueError: if ``obs`` has NaN or infinite values
        """
        if not math.isfinite(_dot(obs, self._ones)):
            raise ValueError("observation contains NaN or infinite values (reward model input)")
        view = self._views[0]
        _minimum(obs, self.obs_high, out=view)
        _maximum(view, self.obs_low, out=view)
        hidden = self._buffers[0]
        for folded, buffer, out in self._hidden_steps:
            _dot(folded, hidden, out=out)
            _tanh(out, out=out)
            hidden = buffer
        return float(_dot(self._last, hidden))


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
        self.predictor = Predictor(weights, self.obs_rms.mean - _OBS_CLIP * std, self.obs_rms.mean + _OBS_CLIP * std)

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
        """Predicted rewards, deterministic (no sampling, no dropout); :meth:`Predictor.predict` of :attr:`predictor`.

        :param obs: ``(batch, obs_dim)`` or a single ``(obs_dim,)`` observation
        :return: float64 array of shape ``(batch,)``, or a numpy float64 scalar for a single observation
        """
        return self.predictor.predict(obs)

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
