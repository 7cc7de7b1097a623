"""Episode-level DTW labelling plus a learned per-step reward: the logic shared by the gymnasium and VecEnv wrappers.

Layout: observations are flattened ``(time, obs_dim)`` arrays. The reward of step t is a function of the observation
returned by that step (``next_observations[t]`` of a :class:`~sb3_dreamer.alignment.dataset.TrajectoryDataset`), so the
reference pairs ``(next_observations[t], rewards[t])`` and the target's returned observations live in the same space.

Cycle (methods.md, section C1, "relabel at episode end"): every step emits r̂(o_{t+1}) from the reward model; at the
end of an episode the episode is aligned to the reference episodes with DTW, the path is turned into per-step labels
(:func:`~sb3_dreamer.alignment.dtw.label_episode`), the labels go into a bounded FIFO store and the model is refitted on
the store once enough new labels have arrived.

Bad input (``strict=False``, the default): an episode with a NaN or infinite observation is not aligned and adds no
labels (:meth:`DTWRewarder.end_episode` warns and returns None; ``skipped_episodes`` counts such episodes); the wrappers
emit :data:`NON_FINITE_REWARD` for the non-finite steps and warn once per episode. ``strict=True`` raises a
``ValueError`` instead. A state restored with :meth:`DTWRewarder.set_state` must have been saved with the same
reference (checked with :func:`reference_fingerprint`).
"""

import hashlib
import os
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from sb3_dreamer.alignment.dataset import TrajectoryDataset
from sb3_dreamer.alignment.dtw import (
    LABEL_MODES,
    TRACKING_MODES,
    Alignment,
    check_c_library,
    label_episode,
    normalise,
    reference_statistics,
    tracking_labels,
    validate_sequence,
)
from sb3_dreamer.alignment.reward_model import FitResult, Predictor, RewardModel

if TYPE_CHECKING:
    from gymnasium.spaces import Space

STATE_VERSION = 1
#: ``max_label_cost="reference"``: the threshold is this quantile of the reference's leave-one-out alignment costs (how
#: far a source step typically lies from the other source episodes), a setting derived without the target's reward.
REFERENCE_COST_QUANTILE = 0.95
#: Reward emitted by the wrappers for a step whose observation has NaN or infinite values (``strict=False``).
NON_FINITE_REWARD = 0.0


class EpisodeReport(NamedTuple):
    """What happened at the end of one episode.

    :param labels: ``(T,)`` labels derived from the alignment path
    :param alignment: the alignment
    :param fit: result of the refit, or None if no refit was due
    :param kept: ``(T,)`` True for the labels added to the store (see ``max_label_cost``)
    :param episode: index of the episode among those the rewarder ended (skipped ones included), from 0
    """

    labels: np.ndarray
    alignment: Alignment
    fit: FitResult | None
    kept: np.ndarray
    episode: int = -1


def load_reference(
    reference: "TrajectoryDataset | str | os.PathLike", observation_space: "Space | None" = None, env_id: str = ""
) -> TrajectoryDataset:
    """Return ``reference`` if it is a dataset, else load it from a ``.npz`` path; optionally check an env against it.

    :param reference: dataset or path
    :param observation_space: the observation space of the env the reward is for; if given, it must be a 1-D Box of
        the reference's dimension (:meth:`TrajectoryDataset.check_observation_space`)
    :param env_id: that env's gymnasium id, named in the error message ("" if unknown)
    :return: the dataset
    :raises ValueError: naming the reference file, the env it was recorded on, the env and its observation shape, if
        the observation space does not fit
    """
    if isinstance(reference, TrajectoryDataset):
        dataset = reference
    elif isinstance(reference, str | os.PathLike):
        dataset = TrajectoryDataset.load(reference)
    else:
        raise TypeError(f"reference must be a TrajectoryDataset or a path, got {type(reference).__name__}")
    if observation_space is not None:
        dataset.check_observation_space(observation_space, env_id)
    return dataset


#: Rows predicted per reward-model call by :func:`predict_finite` (bounds the memory of one call on a large buffer).
PREDICT_CHUNK = 65_536


def predict_finite(predict: Callable[[np.ndarray], np.ndarray], obs: np.ndarray) -> np.ndarray:
    """Rewards of observations in chunks; rows with NaN or infinite values get :data:`NON_FINITE_REWARD`, the reward
    the wrappers emit for them (replay-buffer relabelling and sampling, an episode's learned return).

    :param predict: the reward model, ``(N, obs_dim)`` observations -> ``(N,)`` rewards
    :param obs: ``(N, ...)`` observations
    :return: ``(N,)`` float64 rewards
    """
    flat = obs.reshape(len(obs), -1).astype(np.float32)
    rewards = np.full(len(flat), NON_FINITE_REWARD, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(flat).all(axis=1))
    for start in range(0, len(finite), PREDICT_CHUNK):
        rows = finite[start : start + PREDICT_CHUNK]
        rewards[rows] = predict(flat[rows])
    return rewards


def check_episode_finite(observations: np.ndarray, episode: int, strict: bool) -> bool:
    """Whether a finished episode's observations are all finite; if not, raise (``strict``) or warn.

    :param observations: ``(T, ...)`` float array
    :param episode: the episode's index, for the message
    :param strict: raise a ``ValueError`` instead of warning
    :return: True if every value is finite; False after a ``RuntimeWarning`` (the caller skips the episode)
    :raises ValueError: with ``strict=True``, naming the episode and its first non-finite step
    """
    if observations.ndim == 0 or np.all(np.isfinite(observations)):
        return True
    steps = np.flatnonzero(~np.isfinite(observations.reshape(len(observations), -1)).all(axis=1))
    message = (
        f"episode {episode} has {len(steps)} observation(s) with NaN or infinite values, the first at step {steps[0]} "
        "(0-based)"
    )
    if strict:
        raise ValueError(f"{message}; DTW alignment needs finite values (strict=True)")
    warnings.warn(f"{message}: its labels are skipped (strict=True raises instead)", RuntimeWarning, stacklevel=3)
    return False


def reference_fingerprint(dataset: TrajectoryDataset) -> str:
    """SHA-256 of the reference arrays the rewarder uses: shapes and bytes of ``next_observations`` (float32),
    ``rewards`` (float64) and ``episode_lengths`` (int64). Saved in the rewarder state to recognise the reference.

    :param dataset: reference episodes
    :return: hexadecimal digest
    """
    digest = hashlib.sha256()
    for name, dtype in (("next_observations", np.float32), ("rewards", np.float64), ("episode_lengths", np.int64)):
        array = np.ascontiguousarray(getattr(dataset, name), dtype=dtype)
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


class DTWRewarder:
    """DTW-aligned reward labelling with a learned per-step reward model (no gymnasium dependency).

    Labels follow ``label_mode`` (see :mod:`sb3_dreamer.alignment.dtw`): ``"source_reward"`` (mean source reward of
    the matched reference steps, source sign and scale), ``"source_reward_split"`` (Telepath redistribution, preserves
    the segment total), ``"tracking"`` (negative squared normalised distance, <= 0) or ``"tracking_exp"``
    (``exp(-distance / cost_scale)`` in (0, 1], with ``cost_scale`` the median distance between the reference episodes).

    :param reference: reference episodes (dataset or ``.npz`` path); their rewards are the source rewards
    :param label_mode: how the path is turned into labels
    :param window: Sakoe-Chiba band for DTW (dtaidistance convention), None for none
    :param open_end: allow the target to match a reference prefix
    :param coarse_stride: with several references, pick the reference by DTW on every ``coarse_stride``-th step and
        align at full resolution to that one only (see :func:`~sb3_dreamer.alignment.dtw.align`); 1 for exact choice
    :param pretrain: fit the model on the reference itself at construction (reference obs -> own labels, see
        :meth:`reference_labels`)
    :param pretrain_steps: gradient steps of the pre-fit
    :param anchor_reference: every refit also fits the reference's own labels, so the model keeps the source reward
        on the reference states while it learns the target's DTW labels (without it, refits see target labels only)
    :param max_label_cost: labels of target steps whose local alignment cost (the squared normalised distance to the
        matched reference steps, ``-tracking`` label) exceeds this are not stored: a source reward is only transferred
        to a target state that is close to the source state it is aligned with. None keeps all labels; ``"reference"``
        sets it from the reference alone, without the target's reward: the :data:`REFERENCE_COST_QUANTILE` quantile of
        the reference steps' leave-one-out costs (needs two or more reference episodes); ignored for the tracking modes
        (there the cost is the label)
    :param dtw_labels: store the DTW labels of target episodes (the method). False is the **reference-only control**:
        episodes are still aligned (same cost, same logged diagnostics) but no label is stored, so the model learns
        from the reference alone (the pre-fit, and refits on the reference anchor)
    :param refit_steps: gradient steps per refit (exact unless the time budget truncates)
    :param refit_budget_seconds: wall-clock cap of one refit (only truncates; None for no cap)
    :param refit_interval: refit once at least this many new labelled steps arrived since the last refit
    :param max_label_data: capacity of the label store (oldest labels are dropped first)
    :param net_arch: hidden widths of the reward model
    :param learning_rate: Adam learning rate of the reward model
    :param batch_size: minibatch size of the reward model
    :param seed: seed of the reward model
    :param strict: raise a ``ValueError`` on an observation with NaN or infinite values; False (default): warn with a
        ``RuntimeWarning``, skip the labels of its episode (counted in ``skipped_episodes``) and continue
    """

    def __init__(
        self,
        reference: "TrajectoryDataset | str | os.PathLike",
        label_mode: str = "source_reward",
        window: int | None = 100,
        open_end: bool = True,
        coarse_stride: int = 4,
        pretrain: bool = True,
        pretrain_steps: int = 500,
        anchor_reference: bool = True,
        max_label_cost: float | str | None = None,
        dtw_labels: bool = True,
        refit_steps: int = 50,
        refit_budget_seconds: float | None = 1.0,
        refit_interval: int = 2000,
        max_label_data: int = 100_000,
        net_arch: Sequence[int] = (64, 64),
        learning_rate: float = 1e-3,
        batch_size: int = 256,
        seed: int | None = None,
        strict: bool = False,
    ) -> None:
        check_c_library()
        if label_mode not in LABEL_MODES:
            raise ValueError(f"unknown label_mode {label_mode!r}, expected one of {LABEL_MODES}")
        if max_label_data < 1 or refit_steps < 0 or refit_interval < 1:
            raise ValueError("max_label_data and refit_interval must be >= 1 and refit_steps >= 0")
        if isinstance(max_label_cost, str) and max_label_cost != "reference":
            raise ValueError(f"max_label_cost must be a number >= 0, 'reference' or None, got {max_label_cost!r}")
        if isinstance(max_label_cost, int | float) and not max_label_cost >= 0:
            raise ValueError(f"max_label_cost must be >= 0, 'reference' or None, got {max_label_cost}")
        self.reference = load_reference(reference)
        self.reference_fingerprint = reference_fingerprint(self.reference)
        self.strict = bool(strict)
        self.label_mode = label_mode
        self.window = window
        self.open_end = open_end
        self.coarse_stride = coarse_stride
        self.refit_steps = refit_steps
        self.refit_budget_seconds = refit_budget_seconds
        self.refit_interval = refit_interval
        self.max_label_data = max_label_data
        self.anchor_reference = anchor_reference
        self.dtw_labels = bool(dtw_labels)
        episodes = list(self.reference.episodes())
        raw = [ep.next_observations.astype(np.float64) for ep in episodes]
        self.stats = reference_statistics(raw)
        self._references = [normalise(seq, self.stats) for seq in raw]
        self._reference_rewards = [ep.rewards for ep in episodes]
        # Computed once: the tracking modes' reference labels and tracking_exp's cost_scale both derive from them.
        wants_costs = label_mode in TRACKING_MODES or max_label_cost == "reference"
        self._loo_costs = self._leave_one_out_costs() if wants_costs else None
        self.max_label_cost = self._label_cost_threshold(max_label_cost)
        self.cost_scale = self._reference_cost_scale()
        self.model = RewardModel(self.obs_dim, net_arch, learning_rate, batch_size, seed)
        self.model.update_statistics(self.reference.next_observations)
        self._store_obs = np.zeros((max_label_data, self.obs_dim), dtype=np.float32)
        self._store_labels = np.zeros(max_label_data, dtype=np.float64)
        self._store_pos = 0
        self._store_size = 0
        self.new_labels = 0
        self.n_episodes = 0
        self.skipped_episodes = 0
        self.n_refits = 0
        self.n_truncated_refits = 0
        self._anchor_obs = self.reference.next_observations.astype(np.float32)
        self._anchor_labels = self.reference_labels()
        if pretrain and pretrain_steps > 0:
            self.model.fit(self._anchor_obs, self._anchor_labels, budget_seconds=None, max_steps=pretrain_steps)

    def _leave_one_out_costs(self) -> np.ndarray | None:
        """Local alignment cost of every reference step, each episode aligned to the *other* reference episodes.

        :return: ``(N,)`` costs (``-tracking`` labels) in the order of ``reference.next_observations``, None with fewer
            than two reference episodes
        """
        if len(self._references) < 2:
            return None
        costs = []
        for index, episode in enumerate(self._references):
            others = self._references[:index] + self._references[index + 1 :]
            labels, _ = label_episode(
                episode,
                others,
                None,
                mode="tracking",
                window=self.window,
                open_end=self.open_end,
                coarse_stride=self.coarse_stride,
            )
            costs.append(-labels)
        return np.concatenate(costs)

    def _label_cost_threshold(self, max_label_cost: float | str | None) -> float | None:
        """``max_label_cost`` as a number: as given, or from the reference's leave-one-out costs for ``"reference"``."""
        if max_label_cost != "reference":
            return None if max_label_cost is None else float(max_label_cost)
        if self._loo_costs is None:
            raise ValueError("max_label_cost='reference' needs at least two reference episodes (leave-one-out costs)")
        return float(np.quantile(self._loo_costs, REFERENCE_COST_QUANTILE))

    def _reference_cost_scale(self) -> float:
        """``cost_scale`` of ``"tracking_exp"``: the median leave-one-out cost of the reference steps (how far apart two
        source episodes typically are), or ``obs_dim`` (half the expected squared distance of two independent
        standardised observations) with one reference episode or a zero median. 1.0 for the other modes (unused)."""
        if self.label_mode != "tracking_exp":
            return 1.0
        median = float(np.median(self._loo_costs)) if self._loo_costs is not None else 0.0
        return median if median > 0 else float(self.obs_dim)

    def reference_labels(self) -> np.ndarray:
        """Labels of the reference's own steps, used by the pre-fit and by ``anchor_reference``.

        ``"source_reward"`` and ``"source_reward_split"``: the source rewards (a reference episode aligned with itself
        is the diagonal path). Tracking modes: with several reference episodes, each episode's labels from its
        alignment to the *other* episodes (leave one out; aligned with itself every label would be the best one and the
        pre-fit model a constant); with one episode the best label (0 for ``"tracking"``, 1 for ``"tracking_exp"``).

        :return: ``(N,)`` float64 labels in the order of ``reference.next_observations``
        """
        if self.label_mode not in TRACKING_MODES:
            return self.reference.rewards.astype(np.float64)
        costs = self._loo_costs if self._loo_costs is not None else np.zeros(len(self.reference.rewards))
        return -costs if self.label_mode == "tracking" else np.exp(-costs / self.cost_scale)

    @property
    def obs_dim(self) -> int:
        """Observation dimension of the reference."""
        return self.reference.obs_dim

    @property
    def n_labels(self) -> int:
        """Number of labels in the store."""
        return self._store_size

    @property
    def label_data(self) -> tuple[np.ndarray, np.ndarray]:
        """Stored ``(observations, labels)``, oldest first."""
        order = (np.arange(self._store_size) + (self._store_pos if self._store_size == self.max_label_data else 0)) % (
            self.max_label_data
        )
        return self._store_obs[order], self._store_labels[order]

    @property
    def predictor(self) -> "Predictor":
        """The reward model's numpy forward pass (:attr:`RewardModel.predictor`; replaced at every refit)."""
        return self.model.predictor

    def predict(self, obs: np.ndarray) -> np.ndarray:
        """Learned reward of observations returned by ``step``.

        :param obs: ``(batch, obs_dim)`` or ``(obs_dim,)``
        :return: ``(batch,)`` float64 rewards, or a numpy float64 scalar for a single observation
        """
        return self.model.predict(obs)

    def _add_labels(self, obs: np.ndarray, labels: np.ndarray) -> None:
        for start in range(0, len(obs), self.max_label_data):
            chunk_obs, chunk_labels = obs[start : start + self.max_label_data], labels[start : start + self.max_label_data]
            indices = (self._store_pos + np.arange(len(chunk_obs))) % self.max_label_data
            self._store_obs[indices] = chunk_obs
            self._store_labels[indices] = chunk_labels
            self._store_pos = int((self._store_pos + len(chunk_obs)) % self.max_label_data)
            self._store_size = min(self.max_label_data, self._store_size + len(chunk_obs))

    def non_finite_observation(self, where: str) -> float:
        """Apply the bad-input policy to an observation with NaN or infinite values returned by a step.

        :param where: the step, e.g. ``"step 12 (0-based) of episode 3"``
        :return: :data:`NON_FINITE_REWARD`, the reward of that step
        :raises ValueError: with ``strict=True``
        """
        if self.strict:
            raise ValueError(
                f"observation with NaN or infinite values at {where}; DTW alignment needs finite values (strict=True)"
            )
        warnings.warn(
            f"observation with NaN or infinite values at {where}: its reward is {NON_FINITE_REWARD} and the labels of "
            "this episode will be skipped (not aligned, not added to the reward model's labels); further non-finite "
            "observations of this episode are not reported. Pass strict=True to raise instead.",
            RuntimeWarning,
            stacklevel=3,
        )
        return NON_FINITE_REWARD

    def skip_episode(self) -> None:
        """Count a finished episode whose labels are skipped (it had a non-finite observation); nothing is stored."""
        self.skipped_episodes += 1

    def end_episode(self, observations: np.ndarray) -> EpisodeReport | None:
        """Align a finished episode, store its labels and refit the model if due.

        An episode with NaN or infinite observations raises with ``strict=True``; otherwise it is skipped (a
        ``RuntimeWarning``, ``skipped_episodes`` + 1, nothing stored, no refit) and None is returned.

        :param observations: ``(T, obs_dim)`` observations returned by the episode's steps
        :return: labels, alignment and refit summary; None for a skipped episode
        :raises ValueError: on a malformed sequence, or a non-finite observation with ``strict=True``
        """
        array = np.asarray(observations, dtype=np.float64)
        episode = self.n_episodes + self.skipped_episodes
        if not check_episode_finite(array, episode, self.strict):
            self.skip_episode()
            return None
        obs = validate_sequence(array, "episode observations", self.obs_dim)
        obs_normalised = normalise(obs, self.stats)
        labels, alignment = label_episode(
            obs_normalised,
            self._references,
            self._reference_rewards,
            mode=self.label_mode,
            window=self.window,
            open_end=self.open_end,
            coarse_stride=self.coarse_stride,
            stats=None,  # inputs are already normalised with the reference statistics
            cost_scale=self.cost_scale,
        )
        kept = np.ones(len(labels), dtype=bool)
        if self.max_label_cost is not None and self.label_mode not in TRACKING_MODES:
            reference = self._references[alignment.reference_index]
            kept = -tracking_labels(alignment.path, obs_normalised, reference) <= self.max_label_cost
        if not self.dtw_labels:  # the reference-only control: aligned, nothing stored
            kept[:] = False
        self._add_labels(obs[kept].astype(np.float32), labels[kept])
        self.new_labels += len(labels)
        self.n_episodes += 1
        fit = None
        # An empty fit set: every label so far was above max_label_cost and there is no anchor; nothing to fit yet.
        if self.new_labels >= self.refit_interval and self.refit_steps > 0 and (self.anchor_reference or self.n_labels):
            fit_obs, fit_labels = self.label_data
            if self.anchor_reference:
                fit_obs = np.concatenate([self._anchor_obs, fit_obs])
                fit_labels = np.concatenate([self._anchor_labels, fit_labels])
            fit = self.model.fit(fit_obs, fit_labels, budget_seconds=self.refit_budget_seconds, max_steps=self.refit_steps)
            self.new_labels = 0
            self.n_refits += 1
            if fit.truncated:
                self.n_truncated_refits += 1
                if self.n_truncated_refits == 1:
                    warnings.warn(
                        f"a reward-model refit hit refit_budget_seconds={self.refit_budget_seconds} after {fit.n_steps} of "
                        f"{self.refit_steps} steps: rewards are no longer reproducible across runs; raise the budget or "
                        "lower refit_steps",
                        stacklevel=2,
                    )
        return EpisodeReport(labels, alignment, fit, kept, episode)

    def get_state(self) -> dict[str, np.ndarray]:
        """Reward model, label store, counters and the reference's fingerprint as numpy arrays (not the reference).

        :return: flat dict of arrays
        """
        store_obs, store_labels = self.label_data
        state = {f"model.{key}": value for key, value in self.model.get_state().items()}
        state.update(
            {
                "state_version": np.asarray(STATE_VERSION, dtype=np.int64),
                "obs_dim": np.asarray(self.obs_dim, dtype=np.int64),
                "label_mode": np.asarray(self.label_mode),
                "reference_sha256": np.asarray(self.reference_fingerprint),
                "skipped_episodes": np.asarray(self.skipped_episodes, dtype=np.int64),
                "store_obs": store_obs,
                "store_labels": store_labels,
                "counters": np.asarray(
                    [self.new_labels, self.n_episodes, self.n_refits, self.n_truncated_refits], dtype=np.int64
                ),
            }
        )
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore a state from :meth:`get_state`; nothing is changed if it does not fit.

        The state must have been saved with the same reference (:func:`reference_fingerprint`); a state without a
        fingerprint (saved before it was recorded) is accepted with a warning.

        :param state: dict of arrays
        :raises ValueError: naming the mismatch: state version, observation dim, label mode or reference
        """
        version = int(state["state_version"])
        if version != STATE_VERSION:
            raise ValueError(f"unknown alignment state version {version}, expected {STATE_VERSION}")
        if int(state["obs_dim"]) != self.obs_dim:
            raise ValueError(f"state was saved for obs dim {int(state['obs_dim'])}, this reference has {self.obs_dim}")
        if str(state["label_mode"]) != self.label_mode:
            raise ValueError(f"state was saved with label_mode {str(state['label_mode'])!r}, this is {self.label_mode!r}")
        saved = str(state["reference_sha256"]) if "reference_sha256" in state else None
        if saved is None:
            warnings.warn(
                "the alignment state has no reference fingerprint (saved by an older version): it cannot be checked that "
                "it was built on this reference",
                stacklevel=2,
            )
        elif saved != self.reference_fingerprint:
            raise ValueError(
                f"the alignment state was saved with a different reference (SHA-256 {saved[:16]}...) than "
                f"{self.reference.describe()} (SHA-256 {self.reference_fingerprint[:16]}...) of the same observation dim; "
                "restore it with the reference it was saved with"
            )
        self.model.set_state({key[len("model.") :]: value for key, value in state.items() if key.startswith("model.")})
        self._store_pos, self._store_size = 0, 0
        self._add_labels(np.asarray(state["store_obs"], dtype=np.float32), np.asarray(state["store_labels"], dtype=np.float64))
        self.new_labels, self.n_episodes, self.n_refits, self.n_truncated_refits = (int(v) for v in state["counters"])
        self.skipped_episodes = int(state["skipped_episodes"]) if "skipped_episodes" in state else 0
