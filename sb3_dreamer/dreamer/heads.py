"""Dreamer's output heads and return normalisation, each in one place with its loss and its readout.

Paper: Hafner et al., "Mastering diverse control tasks through world models", Nature 2025 (DreamerV3), Methods:
two-hot symlog regression for the reward predictor and the critic (Eq. 9-10), a Bernoulli continue predictor (Eq. 5),
and percentile return normalisation for the actor ("Actor learning"); and the meta reward head of meta-model transfer.

The heads subclass :class:`torch.nn.Sequential` so that their parameters keep the names of the plain MLPs they
replace (``reward_head.0.weight``, ...): models saved before this module existed load unchanged.
"""

from __future__ import annotations

import torch as th
import torch.nn.functional as F
from torch import nn

from sb3_dreamer.dreamer.distributions import symlog, twohot_bins, twohot_loss, twohot_mean, twohot_nll
from sb3_dreamer.dreamer.world_model import mlp


class TwoHotHead(nn.Sequential):
    """MLP whose output is a categorical over bins evenly spaced in symlog space (DreamerV3, Eq. 9).

    Its prediction is :math:`\\mathrm{symexp}(\\sum_k p_k b_k)` and its loss the negative log-likelihood of the
    two-hot encoding of ``symlog(target)`` (Eq. 10). The output layer starts at zero (DreamerV3's ``outscale 0`` for
    the reward and critic heads), so a fresh head predicts 0.

    :param in_dim: width of the model state
    :param widths: hidden widths, one Linear-LayerNorm-SiLU block each
    :param num_bins: number of bins (255 in DreamerV3)
    """

    def __init__(self, in_dim: int, widths: list[int], num_bins: int = 255) -> None:
        super().__init__(*mlp(in_dim, widths, num_bins, zero_init=True))
        # Derived from num_bins, so not saved: the state dict keeps only the weights.
        self.register_buffer("bins", twohot_bins(num_bins), persistent=False)

    def readout(self, logits: th.Tensor) -> th.Tensor:
        """Prediction in the environment's scale from logits (..., K): shape (...)."""
        return twohot_mean(logits, self.bins)

    def predict(self, feat: th.Tensor) -> th.Tensor:
        """Prediction in the environment's scale for model states (..., F): shape (...)."""
        return self.readout(self(feat))

    def loss(self, feat: th.Tensor, target: th.Tensor) -> th.Tensor:
        """Per-element two-hot loss of ``target`` (environment scale, shape (...)) for model states (..., F)."""
        return twohot_loss(self(feat), target, self.bins)

    def nll(self, log_probs: th.Tensor, target: th.Tensor) -> th.Tensor:
        """Two-hot loss from log-probabilities (..., K), so that several targets can share one ``log_softmax``."""
        return twohot_nll(log_probs, target, self.bins)


class MetaRewardHead(nn.Module):
    """Reward head of meta-model transfer: a two-hot head over the model state and the predictions of frozen source
    reward heads on that same state.

    Sasso, Sabatelli & Wiering, "Multi-Source Transfer Learning for Deep Model-Based Reinforcement Learning", TMLR 2023
    (https://arxiv.org/abs/2205.14410), section 4.3, and ``MetaDecoder2`` of
    https://github.com/remosasso/multi-source-TL-for-deep-MBRL: input ``concat[p_1, ..., p_N, z_t, h_t]``, one hidden
    layer, the reward distribution as output. The source predictions enter in symlog scale (ours: the paper's
    Normal heads predicted rewards of one scale). The source heads are frozen (no ``requires_grad``, in no optimiser);
    gradients still flow through them into the model state. Same interface as :class:`TwoHotHead`.

    :param in_dim: width of the model state
    :param widths: hidden widths of the meta head (the paper: one layer)
    :param num_bins: bins of the meta head and of the source heads
    :param n_sources: number of source reward heads (each ``TwoHotHead(in_dim, widths, num_bins)``)
    """

    def __init__(self, in_dim: int, widths: list[int], num_bins: int, n_sources: int) -> None:
        super().__init__()
        self.sources = nn.ModuleList(TwoHotHead(in_dim, widths, num_bins) for _ in range(n_sources))
        self.sources.requires_grad_(False)
        self.meta = TwoHotHead(in_dim + n_sources, widths, num_bins)

    def source_predictions(self, feat: th.Tensor) -> th.Tensor:
        """Each source head's reward for model states (..., F), in symlog scale: shape (..., N)."""
        return symlog(th.stack([head.predict(feat) for head in self.sources], dim=-1))

    def forward(self, feat: th.Tensor) -> th.Tensor:
        """Logits (..., K) of the meta head for model states (..., F)."""
        return self.meta(th.cat([self.source_predictions(feat), feat], dim=-1))

    def readout(self, logits: th.Tensor) -> th.Tensor:
        """Prediction in the environment's scale from logits (..., K): shape (...)."""
        return self.meta.readout(logits)

    def predict(self, feat: th.Tensor) -> th.Tensor:
        """Prediction in the environment's scale for model states (..., F): shape (...)."""
        return self.readout(self(feat))

    def loss(self, feat: th.Tensor, target: th.Tensor) -> th.Tensor:
        """Per-element two-hot loss of ``target`` (environment scale, shape (...)) for model states (..., F)."""
        return twohot_loss(self(feat), target, self.meta.bins)


class BernoulliHead(nn.Sequential):
    """MLP with one logit: the probability that the episode continues, :math:`c_t` (DreamerV3, Eq. 5).

    :param in_dim: width of the model state
    :param widths: hidden widths, one Linear-LayerNorm-SiLU block each
    """

    def __init__(self, in_dim: int, widths: list[int]) -> None:
        super().__init__(*mlp(in_dim, widths, 1))

    def logits(self, feat: th.Tensor) -> th.Tensor:
        """Logits of continuing for model states (..., F): shape (...)."""
        return self(feat).squeeze(-1)

    def prob(self, feat: th.Tensor) -> th.Tensor:
        """Probability of continuing for model states (..., F): shape (...)."""
        return th.sigmoid(self.logits(feat))

    def loss(self, feat: th.Tensor, target: th.Tensor) -> th.Tensor:
        """Per-element binary cross-entropy of the continue flags ``target`` (...), 1 = the episode goes on."""
        return F.binary_cross_entropy_with_logits(self.logits(feat), target.to(feat.dtype), reduction="none")


class ReturnNorm(nn.Module):
    """Percentile return normalisation: :math:`S = \\max(L, \\mathrm{EMA}(P_{95}(R)) - \\mathrm{EMA}(P_5(R)))`.

    DreamerV3, Methods, "Actor learning": the actor's advantages are divided by S, so returns of any scale give steps
    of one size while small returns are not blown up (L, the limit, is 1 in the paper). The two EMAs are buffers:
    they are saved with the policy and restored exactly. The first update sets them to the first batch's percentiles.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("low", th.zeros(()))
        self.register_buffer("high", th.zeros(()))
        self.register_buffer("initialized", th.zeros(()))

    def update(self, returns: th.Tensor, decay: float) -> None:
        """Move the EMAs of the 5th and 95th percentile of ``returns`` (any shape) with weight ``decay`` on the past."""
        flat = returns.detach().flatten().float()
        low, high = th.quantile(flat, 0.05), th.quantile(flat, 0.95)
        decay = decay if bool(self.initialized) else 0.0
        self.low.mul_(decay).add_((1.0 - decay) * low)
        self.high.mul_(decay).add_((1.0 - decay) * high)
        self.initialized.fill_(1.0)

    def scale(self, limit: float) -> th.Tensor:
        """The current scale S, at least ``limit``."""
        return th.clamp(self.high - self.low, min=limit)
