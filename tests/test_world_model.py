"""World-model shapes: observe/imagine, image sizes, Dict observations; observe and imagine share the sequence step."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from gymnasium import spaces

from sb3_dreamer.dreamer.type_aliases import RSSMState
from sb3_dreamer.dreamer.world_model import RSSM, ObservationCodec


@pytest.mark.parametrize(
    "space",
    [
        spaces.Box(-1, 1, (7,), np.float32),
        spaces.Box(0, 255, (3, 64, 64), np.uint8),
        spaces.Box(0, 1, (10, 10, 4), bool),
        spaces.Box(0, 1, (40, 40, 2), np.float32),
        spaces.Box(0, 255, (1, 84, 84), np.uint8),
        spaces.Dict({"img": spaces.Box(0, 255, (1, 20, 20), np.uint8), "vec": spaces.Box(-5, 5, (5,), np.float32)}),
    ],
    ids=["vector", "64x64x3", "minatar", "40x40x2", "84x84", "dict"],
)
def test_codec_reconstructs_every_shape(space) -> None:
    codec = ObservationCodec(space, units=16, layers=1, cnn_depth=4, feat_dim=24)
    sample = [space.sample() for _ in range(3)]
    if isinstance(space, spaces.Dict):
        obs = {key: th.as_tensor(np.stack([s[key] for s in sample])) for key in space.spaces}
    else:
        obs = th.as_tensor(np.stack(sample))
    assert codec.encode(obs).shape == (3, codec.embed_dim)
    loss = codec.reconstruction_loss(th.zeros(3, 24), obs)
    assert loss.shape == (3,) and th.isfinite(loss).all()
    for image in codec.decode_images(th.zeros(3, 24)).values():
        assert image.shape[0] == 3 and image.min() >= 0 and image.max() <= 1


def test_observe_and_imagine_shapes_and_reset() -> None:
    th.manual_seed(0)
    rssm = RSSM(deter=8, stoch=3, classes=4, units=16, action_dim=2, embed_dim=5)
    B, T = 4, 6
    embed, actions = th.randn(B, T, 5), th.randn(B, T, 2)
    is_first = th.zeros(B, T, dtype=th.bool)
    is_first[:, 0] = True
    post, post_lp, prior_lp = rssm.observe(embed, actions, is_first)
    assert post.deter.shape == (B, T, 8) and post.stoch.shape == (B, T, 12)
    assert post_lp.shape == prior_lp.shape == (B, T, 3, 4)
    th.testing.assert_close(post.stoch.view(B, T, 3, 4).sum(-1), th.ones(B, T, 3))  # one-hot latents
    # Row 3 starts a new episode: its deter equals a fresh start from the initial state with the same input.
    is_first[:, 3] = True
    post2, _, _ = rssm.observe(embed, actions, is_first)
    fresh = rssm.sequence_step(rssm.initial(B, th.device("cpu")), th.zeros(B, 2))
    th.testing.assert_close(post2.deter[:, 3], fresh)
    start = RSSMState(post.deter[:, -1], post.stoch[:, -1])
    feats, imagined_actions = rssm.imagine(start, lambda f: th.tanh(f[:, :2]), horizon=5)
    assert feats.shape == (6, B, 20) and imagined_actions.shape == (5, B, 2)
    # imagine and observe use the same sequence model: the first imagined deter is sequence_step(start, action).
    th.testing.assert_close(feats[1, :, :8], rssm.sequence_step(start, imagined_actions[0]))


def test_kl_free_nats() -> None:
    rssm = RSSM(deter=8, stoch=3, classes=4, units=16, action_dim=2, embed_dim=5)
    same = th.log_softmax(th.randn(2, 3, 4), -1)
    dyn, rep = rssm.kl_loss(same, same, free_nats=1.0)
    th.testing.assert_close(dyn, th.ones(2))
    th.testing.assert_close(rep, th.ones(2))
