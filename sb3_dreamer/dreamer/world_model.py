"""World model of DreamerV3: observation encoder and decoder, RSSM, reward and continue heads.

Paper: Hafner et al., "Mastering diverse control tasks through world models", Nature 2025, Methods "World model
learning". Reference implementation: https://github.com/danijar/dreamerv3 (``dreamerv3/rssm.py``).

Tensors are laid out as (batch, time, ...). ``deter`` is h_t, ``stoch`` the flattened one-hot z_t of
``stoch`` categoricals with ``classes`` classes each; the model state ``feat`` is concat(h_t, z_t).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space_channels_first
from torch import nn

from sb3_dreamer.dreamer.distributions import categorical_kl, gumbel_noise, sample_onehot, symlog, unimix_logits
from sb3_dreamer.dreamer.type_aliases import RSSMState, TensorDict


def mlp(in_dim: int, widths: list[int], out_dim: int | None = None, zero_init: bool = False) -> nn.Sequential:
    """Linear-LayerNorm-SiLU blocks, optionally followed by a linear output layer (DreamerV3 uses RMSNorm + SiLU).

    :param in_dim: input width
    :param widths: hidden widths, one block each
    :param out_dim: output width, or None for no output layer
    :param zero_init: zero-initialise the output layer (DreamerV3 ``outscale 0`` for reward and critic heads)
    :return: the module
    """
    modules: list[nn.Module] = []
    width = in_dim
    for hidden in widths:
        modules += [nn.Linear(width, hidden, bias=False), nn.LayerNorm(hidden), nn.SiLU()]
        width = hidden
    if out_dim is not None:
        out = nn.Linear(width, out_dim)
        if zero_init:
            nn.init.zeros_(out.weight)
            nn.init.zeros_(out.bias)
        modules.append(out)
    return nn.Sequential(*modules)


class ImageSpec:
    """How one image observation is scaled and laid out.

    :param space: a 3-D Box, channel-first or channel-last (detected with SB3's rule: the smallest axis)
    """

    def __init__(self, space: spaces.Box) -> None:
        self.channels_first = is_image_space_channels_first(space)
        shape = space.shape
        self.chw = shape if self.channels_first else (shape[2], shape[0], shape[1])
        low, high = float(np.min(space.low)), float(np.max(space.high))
        if not (np.isfinite(low) and np.isfinite(high)) or high <= low:
            low, high = 0.0, 255.0 if space.dtype == np.uint8 else 1.0
        self.low, self.high = low, high

    def preprocess(self, x: th.Tensor) -> th.Tensor:
        """Scale to [-0.5, 0.5] and move channels first.

        :param x: images of shape (N, *space.shape), any dtype
        :return: float images of shape (N, C, H, W)
        """
        x = x.float()
        if not self.channels_first:
            x = x.permute(0, 3, 1, 2)
        return (x - self.low) / (self.high - self.low) - 0.5


def _split_space(observation_space: spaces.Space) -> tuple[dict[str, spaces.Box], dict[str, spaces.Box]]:
    """Split an observation space into image and vector parts, keyed by dict key ("obs" for a plain Box)."""
    items = observation_space.spaces.items() if isinstance(observation_space, spaces.Dict) else [("obs", observation_space)]
    images: dict[str, spaces.Box] = {}
    vectors: dict[str, spaces.Box] = {}
    for key, space in items:
        assert isinstance(space, spaces.Box), f"observation {key!r} must be a Box, got {space}"
        (images if len(space.shape) == 3 else vectors)[key] = space
    return images, vectors


def _conv_stages(height: int, width: int) -> int:
    """Number of stride-2 stages that bring the smaller side down to at most 6 pixels (at least 1, at most 4)."""
    stages, side = 0, min(height, width)
    while side > 6 and stages < 4:
        side = (side + 1) // 2
        stages += 1
    return max(stages, 1)


class ConvEncoder(nn.Module):
    """Strided CNN over one image (DreamerV3 uses kernel 5 / stride 2; we use kernel 4 so any size halves cleanly).

    :param spec: image layout
    :param depth: channels of the first stage, doubled per stage
    """

    def __init__(self, spec: ImageSpec, depth: int) -> None:
        super().__init__()
        channels, height, width = spec.chw
        self.input_sizes: list[tuple[int, int]] = []
        layers: list[nn.Module] = []
        in_ch = channels
        for stage in range(_conv_stages(height, width)):
            out_ch = depth * 2**stage
            self.input_sizes.append((height, width))
            layers += [nn.Conv2d(in_ch, out_ch, 4, 2, 1), nn.GroupNorm(1, out_ch), nn.SiLU()]
            in_ch = out_ch
            height, width = (height + 2 - 4) // 2 + 1, (width + 2 - 4) // 2 + 1
        self.net = nn.Sequential(*layers)
        self.out_shape = (in_ch, height, width)
        self.out_dim = int(np.prod(self.out_shape))

    def forward(self, x: th.Tensor) -> th.Tensor:
        return self.net(x).flatten(1)


class ConvDecoder(nn.Module):
    """Transposed CNN mirroring :class:`ConvEncoder`, predicting the image in [-0.5, 0.5].

    :param encoder: the encoder to mirror
    :param channels: output channels
    :param feat_dim: input width (the model state)
    """

    def __init__(self, encoder: ConvEncoder, channels: int, feat_dim: int) -> None:
        super().__init__()
        self.in_shape = encoder.out_shape
        self.output_sizes = list(reversed(encoder.input_sizes))
        self.linear = nn.Linear(feat_dim, encoder.out_dim)
        self.deconvs = nn.ModuleList()
        self.norms = nn.ModuleList()
        in_ch = encoder.out_shape[0]
        for index in range(len(self.output_sizes)):
            last = index == len(self.output_sizes) - 1
            out_ch = channels if last else in_ch // 2
            self.deconvs.append(nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1))
            self.norms.append(nn.Identity() if last else nn.Sequential(nn.GroupNorm(1, out_ch), nn.SiLU()))
            in_ch = out_ch

    def forward(self, feat: th.Tensor) -> th.Tensor:
        x = self.linear(feat).view(-1, *self.in_shape)
        for deconv, norm, size in zip(self.deconvs, self.norms, self.output_sizes, strict=True):
            x = norm(deconv(x, output_size=list(size)))
        return x


class ObservationCodec(nn.Module):
    """Encoder and decoder for Box and Dict observations (vectors through symlog + MLP, images through a CNN).

    :param observation_space: Box (vector or image) or non-nested Dict of those
    :param units: MLP width
    :param layers: MLP depth
    :param cnn_depth: first CNN stage width
    :param feat_dim: model state width (decoder input)
    """

    def __init__(self, observation_space: spaces.Space, units: int, layers: int, cnn_depth: int, feat_dim: int) -> None:
        super().__init__()
        image_spaces, vector_spaces = _split_space(observation_space)
        self.image_specs = {key: ImageSpec(space) for key, space in image_spaces.items()}
        self.vector_dims = {key: int(np.prod(space.shape)) for key, space in vector_spaces.items()}
        self.vector_shapes = {key: space.shape for key, space in vector_spaces.items()}
        self.image_encoders = nn.ModuleDict({key: ConvEncoder(spec, cnn_depth) for key, spec in self.image_specs.items()})
        self.image_decoders = nn.ModuleDict(
            {key: ConvDecoder(self.image_encoders[key], spec.chw[0], feat_dim) for key, spec in self.image_specs.items()}
        )
        vector_dim = sum(self.vector_dims.values())
        self.vector_encoder = mlp(vector_dim, [units] * layers) if vector_dim else None
        self.vector_decoder = mlp(feat_dim, [units] * layers, vector_dim) if vector_dim else None
        self.embed_dim = sum(enc.out_dim for enc in self.image_encoders.values()) + (units if vector_dim else 0)

    def _inputs(self, obs: th.Tensor | TensorDict) -> TensorDict:
        return obs if isinstance(obs, dict) else {"obs": obs}

    def targets(self, obs: th.Tensor | TensorDict) -> tuple[dict[str, th.Tensor], th.Tensor | None]:
        """Decoder targets: images in [-0.5, 0.5] (N, C, H, W) per key, and the symlog vector part (N, D)."""
        inputs = self._inputs(obs)
        images = {key: spec.preprocess(inputs[key]) for key, spec in self.image_specs.items()}
        vector = None
        if self.vector_dims:
            vector = symlog(th.cat([inputs[key].float().flatten(1) for key in self.vector_dims], dim=-1))
        return images, vector

    def encode(self, obs: th.Tensor | TensorDict) -> th.Tensor:
        """Embed a batch of observations (N, ...) into (N, embed_dim)."""
        images, vector = self.targets(obs)
        parts = [self.image_encoders[key](image) for key, image in images.items()]
        if self.vector_encoder is not None:
            parts.append(self.vector_encoder(vector))
        return th.cat(parts, dim=-1)

    def reconstruction_loss(self, feat: th.Tensor, obs: th.Tensor | TensorDict) -> th.Tensor:
        """Per-sample reconstruction loss: summed squared error in symlog / [-0.5, 0.5] image space (DreamerV3, Eq. 5).

        :param feat: model states (N, F)
        :param obs: the observations they should reconstruct (N, ...)
        :return: tensor of shape (N,)
        """
        images, vector = self.targets(obs)
        loss = th.zeros(feat.shape[0], device=feat.device)
        for key, target in images.items():
            loss = loss + (self.image_decoders[key](feat) - target).pow(2).flatten(1).sum(-1)
        if self.vector_decoder is not None:
            loss = loss + (self.vector_decoder(feat) - vector).pow(2).sum(-1)
        return loss

    def decode_images(self, feat: th.Tensor) -> dict[str, th.Tensor]:
        """Predicted images in [0, 1], (N, C, H, W) per key (for open-loop previews)."""
        return {key: (decoder(feat) + 0.5).clamp(0.0, 1.0) for key, decoder in self.image_decoders.items()}


def bound_action(action: th.Tensor) -> th.Tensor:
    """a / sg(max(1, |a|)), elementwise: actions in [-1, 1] pass unchanged, others are scaled onto the bound.

    DreamerV3 (2025 code, ``RSSM._core``): https://github.com/danijar/dreamerv3/blob/e3f0224/dreamerv3/rssm.py
    """
    return action / action.detach().abs().clamp(min=1.0)


class RSSM(nn.Module):
    """Recurrent state-space model with discrete latents (DreamerV2/V3).

    Sequence model h_t = GRU(h_{t-1}, z_{t-1}, a_{t-1}); posterior z_t ~ q(z | h_t, e_t); prior z_t ~ p(z | h_t).
    The GRU is DreamerV2's LayerNorm GRU with update bias -1 (DreamerV3 splits it into blocks; we keep one block,
    which is cheaper on CPU at the widths we use).

    :param deter: width of h_t
    :param stoch: number of categorical latents
    :param classes: classes per latent
    :param units: hidden width
    :param action_dim: width of the action representation (one-hot for discrete actions)
    :param embed_dim: width of the observation embedding
    :param unimix: uniform mix of the latent categoricals (DreamerV3: 1 %)
    """

    def __init__(
        self, deter: int, stoch: int, classes: int, units: int, action_dim: int, embed_dim: int, unimix: float = 0.01
    ) -> None:
        super().__init__()
        self.deter_dim, self.stoch, self.classes, self.unimix = deter, stoch, classes, unimix
        self.stoch_dim = stoch * classes
        self.img_in = mlp(self.stoch_dim + action_dim, [units])
        self.gru = nn.Linear(units + deter, 3 * deter, bias=False)
        self.gru_norm = nn.LayerNorm(3 * deter)
        self.prior_net = mlp(deter, [units], self.stoch_dim)
        self.post_net = mlp(deter + embed_dim, [units], self.stoch_dim)

    @property
    def feat_dim(self) -> int:
        return self.deter_dim + self.stoch_dim

    def initial(self, batch_size: int, device: th.device) -> RSSMState:
        """All-zero initial state for ``batch_size`` sequences."""
        return RSSMState(
            th.zeros(batch_size, self.deter_dim, device=device), th.zeros(batch_size, self.stoch_dim, device=device)
        )

    def _latent_log_probs(self, logits: th.Tensor) -> th.Tensor:
        return unimix_logits(logits.view(*logits.shape[:-1], self.stoch, self.classes), self.unimix)

    def sequence_step(self, state: RSSMState, action: th.Tensor) -> th.Tensor:
        """Advance the deterministic state: h_t = GRU(h_{t-1}, [z_{t-1}, a_{t-1}]).

        Continuous actions enter scaled to |a| <= 1, as a / sg(max(1, |a|)) (DreamerV3's 2025 code,
        https://github.com/danijar/dreamerv3/blob/e3f0224/dreamerv3/rssm.py, ``RSSM._core``): the world model is trained
        on replayed actions in [-1, 1], and imagined samples of the actor's normal may fall outside. The stop-gradient
        keeps a gradient to out-of-range actions (scaled by 1 / |a|). One-hot actions are unchanged.

        :return: the new ``deter`` (N, deter)
        """
        action = bound_action(action)
        x = self.img_in(th.cat([state.stoch, action], dim=-1))
        reset, cand, update = self.gru_norm(self.gru(th.cat([x, state.deter], dim=-1))).chunk(3, dim=-1)
        reset = th.sigmoid(reset)
        cand = th.tanh(reset * cand)
        update = th.sigmoid(update - 1.0)
        return update * cand + (1.0 - update) * state.deter

    def prior_log_probs(self, deter: th.Tensor) -> th.Tensor:
        """Log-probabilities of the prior p(z_t | h_t), shape (..., stoch, classes)."""
        return self._latent_log_probs(self.prior_net(deter))

    def post_log_probs(self, deter: th.Tensor, embed: th.Tensor) -> th.Tensor:
        """Log-probabilities of the posterior q(z_t | h_t, e_t), shape (..., stoch, classes)."""
        return self._latent_log_probs(self.post_net(th.cat([deter, embed], dim=-1)))

    def observe(
        self, embed: th.Tensor, prev_actions: th.Tensor, is_first: th.Tensor, state: RSSMState | None = None
    ) -> tuple[RSSMState, th.Tensor, th.Tensor]:
        """Filter a replayed sequence with the posterior (DreamerV3, Eq. 3).

        The state (and the previous action) is reset to the initial state wherever ``is_first`` is set.

        :param embed: observation embeddings (B, T, E)
        :param prev_actions: actions a_{t-1} (B, T, A)
        :param is_first: episode-start flags (B, T)
        :param state: state before the first step, or None for the initial state
        :return: posterior states (deter (B, T, D), stoch (B, T, S*C)), posterior and prior log-probabilities (B, T, S, C)
        """
        batch, time = embed.shape[:2]
        state = state if state is not None else self.initial(batch, embed.device)
        keep = (1.0 - is_first.float()).unsqueeze(-1)  # (B, T, 1)
        # The posterior's first layer is linear in [h_t, e_t]: project all embeddings at once, outside the loop.
        first = self.post_net[0]
        embed_proj = F.linear(embed, first.weight[:, self.deter_dim :])  # (B, T, units)
        deter_weight, post_rest = first.weight[:, : self.deter_dim], self.post_net[1:]
        noise = gumbel_noise((batch, time, self.stoch, self.classes), embed.device)
        deters, stochs, post_lps = [], [], []
        for t in range(time):
            state = RSSMState(state.deter * keep[:, t], state.stoch * keep[:, t])
            deter = self.sequence_step(state, prev_actions[:, t] * keep[:, t])
            post_logits = post_rest(F.linear(deter, deter_weight) + embed_proj[:, t])
            post_lp = self._latent_log_probs(post_logits)
            state = RSSMState(deter, sample_onehot(post_lp, noise=noise[:, t]).flatten(-2))
            deters.append(deter)
            stochs.append(state.stoch)
            post_lps.append(post_lp)
        deter_seq = th.stack(deters, dim=1)
        prior_lp = self.prior_log_probs(deter_seq)  # the prior depends on h_t only: one batched pass
        return RSSMState(deter_seq, th.stack(stochs, dim=1)), th.stack(post_lps, dim=1), prior_lp

    def imagine(self, start: RSSMState, policy: Callable[[th.Tensor], th.Tensor], horizon: int) -> tuple[th.Tensor, th.Tensor]:
        """Roll the prior forward with actions from ``policy`` (DreamerV3, "Actor-critic learning").

        :param start: start states (N, ...)
        :param policy: maps model states (N, F) to action representations (N, A)
        :param horizon: number of imagined steps H
        :return: model states (H + 1, N, F) starting with ``start``, and actions (H, N, A), a_t taken in state t
        """
        state = start
        feats = [th.cat(state, dim=-1)]
        actions = []
        noise = gumbel_noise((horizon, start.deter.shape[0], self.stoch, self.classes), start.deter.device)
        for t in range(horizon):
            action = policy(feats[-1])
            deter = self.sequence_step(state, action)
            state = RSSMState(deter, sample_onehot(self.prior_log_probs(deter), noise=noise[t]).flatten(-2))
            feats.append(th.cat(state, dim=-1))
            actions.append(action)
        return th.stack(feats), th.stack(actions)

    def kl_loss(self, post_lp: th.Tensor, prior_lp: th.Tensor, free_nats: float) -> tuple[th.Tensor, th.Tensor]:
        """Dynamics and representation losses with free bits (DreamerV3, Eq. 5).

        :param post_lp: posterior log-probabilities (..., S, C)
        :param prior_lp: prior log-probabilities (..., S, C)
        :param free_nats: KL below this value is not penalised
        :return: (dyn, rep) losses of shape (...): max(free, KL[sg(q) || p]) and max(free, KL[q || sg(p)])
        """
        dyn = categorical_kl(post_lp.detach(), prior_lp).sum(-1)
        rep = categorical_kl(post_lp, prior_lp.detach()).sum(-1)
        return dyn.clamp(min=free_nats), rep.clamp(min=free_nats)
