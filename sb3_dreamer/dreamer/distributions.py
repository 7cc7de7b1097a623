"""Pure tensor functions for DreamerV3's output spaces.

Paper: Hafner et al., "Mastering diverse control tasks through world models", Nature 2025 (DreamerV3), Methods:
symlog predictions, two-hot discrete regression of rewards and values, and unimix categoricals.

Tensors are laid out as (batch, time, ...) or any leading shape; the last dimension is the one these functions act on.
"""

from __future__ import annotations

import torch as th
import torch.nn.functional as F


def symlog(x: th.Tensor) -> th.Tensor:
    """Symmetric log squashing, :math:`\\mathrm{symlog}(x) = \\mathrm{sign}(x) \\ln(|x| + 1)` (DreamerV3, Eq. 1).

    :param x: any tensor
    :return: tensor of the same shape
    """
    return th.sign(x) * th.log1p(x.abs())


def symexp(x: th.Tensor) -> th.Tensor:
    """Inverse of :func:`symlog`, :math:`\\mathrm{sign}(x) (\\exp(|x|) - 1)` (DreamerV3, Eq. 1).

    :param x: any tensor
    :return: tensor of the same shape
    """
    return th.sign(x) * th.expm1(x.abs())


def twohot_bins(num_bins: int = 255, low: float = -20.0, high: float = 20.0) -> th.Tensor:
    """Bin centres for two-hot regression, evenly spaced in symlog space (DreamerV3, Methods, "Critic learning").

    :param num_bins: number of bins (255 in DreamerV3)
    :param low: lowest bin in symlog space
    :param high: highest bin in symlog space
    :return: tensor of shape (num_bins,)
    """
    return th.linspace(low, high, num_bins)


def _twohot_indices(x: th.Tensor, bins: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """The two neighbouring bins of each scalar and the weight of the upper one (DreamerV3, Eq. 9).

    :param x: tensor of any shape (...), in the bins' space
    :param bins: sorted bin centres, shape (K,)
    :return: ``(below, above, weight_above)``, each of shape (...)
    """
    x = x.clamp(bins[0], bins[-1])
    above = th.searchsorted(bins, x.detach().contiguous(), right=True).clamp(1, len(bins) - 1)
    below = above - 1
    low, high = bins[below], bins[above]
    return below, above, ((x - low) / (high - low)).clamp(0.0, 1.0)


def twohot_encode(x: th.Tensor, bins: th.Tensor) -> th.Tensor:
    """Two-hot encoding of scalars that already live in the bins' space (DreamerV3, Eq. 9).

    The weight is split between the two nearest bins in proportion to proximity; values outside the range go
    entirely to the edge bin.

    :param x: tensor of any shape (...)
    :param bins: sorted bin centres, shape (K,)
    :return: tensor of shape (..., K) whose rows sum to one
    """
    below, above, weight_above = _twohot_indices(x, bins)
    encoded = F.one_hot(below, len(bins)).to(x.dtype) * (1.0 - weight_above).unsqueeze(-1)
    encoded = encoded + F.one_hot(above, len(bins)).to(x.dtype) * weight_above.unsqueeze(-1)
    return encoded


def twohot_mean(logits: th.Tensor, bins: th.Tensor) -> th.Tensor:
    """Prediction of a two-hot symexp head: :math:`\\mathrm{symexp}(\\sum_k p_k b_k)` (DreamerV3, Eq. 9).

    :param logits: tensor of shape (..., K)
    :param bins: bin centres in symlog space, shape (K,)
    :return: tensor of shape (...)
    """
    return symexp(logits.softmax(-1) @ bins)


def twohot_loss(logits: th.Tensor, target: th.Tensor, bins: th.Tensor) -> th.Tensor:
    """Negative log-likelihood of ``symlog(target)`` under a two-hot head (DreamerV3, Eq. 9-10).

    :param logits: tensor of shape (..., K)
    :param target: tensor of shape (...) in the environment's scale
    :param bins: bin centres in symlog space, shape (K,)
    :return: per-element loss of shape (...)
    """
    return twohot_nll(logits.log_softmax(-1), target, bins)


def twohot_nll(log_probs: th.Tensor, target: th.Tensor, bins: th.Tensor) -> th.Tensor:
    """:func:`twohot_loss` from log-probabilities, so that several targets can share one ``log_softmax``.

    :param log_probs: normalised log-probabilities over the bins, shape (..., K)
    :param target: tensor of shape (...) in the environment's scale
    :param bins: bin centres in symlog space, shape (K,)
    :return: per-element loss of shape (...)
    """
    # Only two of the K log-probabilities have non-zero weight: gather them instead of building (..., K) one-hots.
    below, above, weight_above = _twohot_indices(symlog(target), bins)
    log_below = log_probs.gather(-1, below.unsqueeze(-1)).squeeze(-1)
    log_above = log_probs.gather(-1, above.unsqueeze(-1)).squeeze(-1)
    return -((1.0 - weight_above) * log_below + weight_above * log_above)


def unimix_logits(logits: th.Tensor, unimix: float) -> th.Tensor:
    """Mix a categorical with a uniform distribution: :math:`p = (1 - u)\\,\\mathrm{softmax}(l) + u / K`.

    DreamerV3 (Methods, "World model learning") uses u = 1 % for latents and discrete actions to keep KL and
    log-probabilities finite.

    :param logits: tensor of shape (..., K)
    :param unimix: uniform mixing weight u in [0, 1)
    :return: log-probabilities of the mixture, shape (..., K)
    """
    if unimix <= 0.0:
        return logits.log_softmax(-1)
    probs = _small_softmax(logits)
    probs = (1.0 - unimix) * probs + unimix / logits.shape[-1]
    return probs.log()


def _small_softmax(logits: th.Tensor) -> th.Tensor:
    """Softmax over the last dimension, computed over dim -2 of the transposed view when there are few classes.

    ATen's CPU softmax over a short last dimension (8-32 latent classes) is several times slower than its vectorised
    kernel for an inner dimension (pytorch/pytorch#59195); the result is the same up to float rounding.

    :param logits: tensor of shape (..., K)
    :return: probabilities of shape (..., K)
    """
    if logits.dim() < 2 or logits.shape[-1] > 64 or logits.device.type != "cpu":
        return logits.softmax(-1)
    return logits.transpose(-1, -2).softmax(-2).transpose(-1, -2)


def gumbel_noise(shape: tuple[int, ...] | th.Size, device: th.device | None = None) -> th.Tensor:
    """Standard Gumbel noise, -log(-log(U)), for :func:`sample_onehot` (drawn in one call for whole sequences).

    :param shape: shape of the noise, ending with the class dimension
    :param device: torch device
    :return: tensor of the given shape
    """
    uniform = th.rand(shape, device=device).clamp_(1e-20, 1.0)
    return -th.log(-th.log(uniform))


def sample_onehot(log_probs: th.Tensor, straight_through: bool = True, noise: th.Tensor | None = None) -> th.Tensor:
    """Sample a one-hot vector from a categorical with the Gumbel-max trick.

    Gumbel-max is about twice as fast as ``torch.multinomial`` on CPU (see ``cpu-notes``). With ``straight_through``
    the gradient of the probabilities passes through the sample (DreamerV2, Hafner et al. 2021, Algorithm 1).

    :param log_probs: log-probabilities of shape (..., K)
    :param straight_through: add the straight-through gradient
    :param noise: Gumbel noise of the same shape (drawn here if None)
    :return: one-hot samples of shape (..., K)
    """
    if noise is None:
        noise = gumbel_noise(log_probs.shape, log_probs.device)
    # The maximum as a comparison instead of argmax + one_hot (one fused op; ties have probability zero under noise).
    perturbed = log_probs.detach() + noise
    sample = (perturbed == perturbed.amax(-1, keepdim=True)).to(log_probs.dtype)
    if straight_through:
        probs = log_probs.exp()
        sample = sample + probs - probs.detach()
    return sample


def mode_onehot(log_probs: th.Tensor) -> th.Tensor:
    """One-hot vector of the most likely class.

    :param log_probs: log-probabilities of shape (..., K)
    :return: one-hot tensor of shape (..., K)
    """
    return F.one_hot(log_probs.argmax(-1), log_probs.shape[-1]).to(log_probs.dtype)


def categorical_kl(log_p: th.Tensor, log_q: th.Tensor) -> th.Tensor:
    """KL divergence :math:`\\mathrm{KL}[p \\| q]` between categoricals, summed over the class dimension.

    :param log_p: log-probabilities of p, shape (..., K)
    :param log_q: log-probabilities of q, shape (..., K)
    :return: tensor of shape (...)
    """
    return (log_p.exp() * (log_p - log_q)).sum(-1)
