"""Each recorded behaviour (model/weights_behaviour.py) changes exactly what it says it changes."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from foundation.audio_features import load_wav2vec2, wav2vec2_features
from foundation.config import ConfigError
from foundation.media_io import read_audio
from model.weights_behaviour import HALLO, ModelBehaviour, with_overrides
from model.net import UNCONDITIONAL, Drop
from model.scheduler import make_scheduler

BLOCK = "up_blocks.1.attentions.0.transformer_blocks.0"
ATTENTION = BLOCK.rsplit(".transformer_blocks.", 1)[0]


def _encode(net, batch, drop=Drop()):
    return net.encode(batch.ref[:1], batch.motion[:1], batch.embedding[:1], batch.face_mask[:1], batch.audio[:1],
                      batch.regions[:1], drop)


def _guided(net, batch, frames):
    return net.encode_guided(batch.ref[:1], batch.motion[:1], batch.embedding[:1], batch.face_mask[:1],
                             batch.audio[:1], batch.regions[:1], frames=frames)


def _close(a, b):
    return torch.allclose(a, b, rtol=0, atol=1e-5)


@torch.no_grad()
def test_per_branch_pairing_is_two_separate_encodes(tiny_net, batch):
    null, cond = _guided(tiny_net, batch, frames=batch.noisy.shape[2])
    alone_null, alone_cond = _encode(tiny_net, batch, UNCONDITIONAL), _encode(tiny_net, batch)
    assert null.reference is None and alone_null.reference is None
    assert _close(cond.reference[BLOCK], alone_cond.reference[BLOCK])
    assert _close(cond.motion[ATTENTION], alone_cond.motion[ATTENTION])
    assert _close(null.motion[ATTENTION], alone_null.motion[ATTENTION])
    assert torch.equal(null.face_tokens, alone_null.face_tokens) and null.face_features is None
    assert not null.audio_tokens.any() and torch.equal(cond.audio_tokens, alone_cond.audio_tokens)


@torch.no_grad()
def test_hallo_tiled_pairing_alternates_tokens_over_images_and_halves_over_frames(tiny_net, batch):
    """Two motion frames: images [ref, m1, m2] x [null | cond] get tokens [u, c, u | c, u, c], and the
    conditional frames read the two halves' reference features in turn (frame 0 the null half's)."""
    frames = 5
    with_u, with_c = _encode(tiny_net, batch, Drop(identity=True)), _encode(tiny_net, batch)
    tiny_net.behaviour = dataclasses.replace(tiny_net.behaviour, reference_token_pairing="hallo_tiled")
    null, cond = _guided(tiny_net, batch, frames)
    assert _close(null.motion[ATTENTION][:, 0], with_c.motion[ATTENTION][:, 0])  # m1 with the cond tokens
    assert _close(null.motion[ATTENTION][:, 1], with_u.motion[ATTENTION][:, 1])  # m2 with the null tokens
    assert _close(cond.motion[ATTENTION][:, 0], with_u.motion[ATTENTION][:, 0])
    assert _close(cond.motion[ATTENTION][:, 1], with_c.motion[ATTENTION][:, 1])
    reference = cond.reference[BLOCK]
    assert reference.shape[:2] == (1, frames)
    # (frames + k) % 2 with 5 frames: halves [1, 0, 1, 0, 1]; the cond half's reference image had cond tokens (row 3)
    for k, half in enumerate([1, 0, 1, 0, 1]):
        assert _close(reference[:, k], (with_u if half == 0 else with_c).reference[BLOCK]), k
    # the denoiser takes per-frame reference features (the batch's audio has 6 frames: left out here)
    out = tiny_net.denoise(batch.noisy[:1, :, :frames], 10, dataclasses.replace(cond, audio_tokens=None))
    assert out.shape == (1, 4, frames, 8, 8)


@torch.no_grad()
def test_float16_bank_rounds_the_reference_and_motion_features(tiny_net, batch):
    exact = _encode(tiny_net, batch)
    tiny_net.behaviour = dataclasses.replace(tiny_net.behaviour, reference_bank_dtype="float16")
    rounded = _encode(tiny_net, batch)
    for got, full in ((rounded.reference[BLOCK], exact.reference[BLOCK]), (rounded.motion[ATTENTION], exact.motion[ATTENTION])):
        assert torch.equal(got, full.half().float()) and not torch.equal(got, full)


@torch.no_grad()
def test_plain_block_motion_modules_run_only_when_the_behaviour_says(tiny_net, batch):
    cond = _encode(tiny_net, batch)
    plain = tiny_net.denoising_unet.plain_block_motion_modules()
    assert len(plain) == 3  # tiny preset: DownBlock2D (1 layer) + UpBlock2D (2 layers)

    def outputs():
        before = tiny_net.denoise(batch.noisy[:1], 10, cond)
        for module in plain:
            torch.nn.init.normal_(module.proj_out.weight, std=0.5)
        after = tiny_net.denoise(batch.noisy[:1], 10, cond)
        return before, after

    tiny_net.behaviour = dataclasses.replace(tiny_net.behaviour, motion_in_plain_blocks=False)
    before, after = outputs()
    assert torch.equal(before, after)
    tiny_net.behaviour = dataclasses.replace(tiny_net.behaviour, motion_in_plain_blocks=True)
    before, after = outputs()
    assert not torch.allclose(before, after, atol=1e-4)


def test_sampling_schedules_share_timesteps_but_not_noise_levels():
    trained, hallo = make_scheduler(), make_scheduler(HALLO.sampling_beta_schedule)
    trained.set_timesteps(40), hallo.set_timesteps(40)
    assert torch.equal(trained.timesteps, hallo.timesteps) and trained.timesteps[-1] == 24
    gap = (trained.alphas_cumprod.sqrt() - hallo.alphas_cumprod.sqrt()).abs().max()
    assert 0.1 < gap < 0.13  # HALLO_COMPAT: sqrt(alpha_bar) differs by up to 0.115


def test_audio_padding_runs_the_features_on_to_whole_clips(tiny_base, short_speech):
    waveform, _ = read_audio(short_speech, 16000, mono=True)
    model, extractor = load_wav2vec2(tiny_base / "wav2vec2")
    plain = wav2vec2_features(waveform[0], model, extractor)
    padded = wav2vec2_features(waveform[0], model, extractor, pad_to_multiple=16)
    assert plain.shape[0] == 30 and padded.shape == (32, *plain.shape[1:])
    assert not np.allclose(plain.numpy(), padded[:30].numpy())  # zero-padding changes the features, as in Hallo


def test_overrides_are_checked_like_config_keys():
    assert with_overrides(HALLO, {"motion_in_plain_blocks": True}) == dataclasses.replace(HALLO, motion_in_plain_blocks=True)
    with pytest.raises(ConfigError, match="model.behaviour.reference_token_pairing"):
        with_overrides(ModelBehaviour(), {"reference_token_pairing": "tiled"})
    with pytest.raises(ConfigError, match="unknown config key 'model.behaviour.bank'"):
        with_overrides(ModelBehaviour(), {"bank": "float16"})
