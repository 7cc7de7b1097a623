"""Named tuples shared by the Dreamer modules. Tensors are laid out as (batch, time, ...)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch as th

TensorDict = dict[str, th.Tensor]


class RSSMState(NamedTuple):
    """Latent state of the RSSM: deterministic ``deter`` (h_t) and flattened one-hot ``stoch`` (z_t)."""

    deter: th.Tensor
    stoch: th.Tensor


class SequenceSamples(NamedTuple):
    """A batch of replayed sequences, each tensor of shape (batch, time, ...).

    Row t holds the observation x_t, the action a_{t-1} that led to it, the reward r_t received on arrival,
    and the flags of x_t (DreamerV3's replay format).
    """

    observations: th.Tensor | TensorDict
    prev_actions: th.Tensor
    rewards: th.Tensor
    is_first: th.Tensor
    is_terminal: th.Tensor


class AgentState(NamedTuple):
    """Recurrent state carried by ``predict`` between calls (numpy, batch first)."""

    deter: np.ndarray
    stoch: np.ndarray
    prev_action: np.ndarray
