"""Output shapes of every module at the tiny preset, and the audio-window helper."""
from __future__ import annotations

import pytest
import torch

from model.face_locator import FaceLocator
from model.motion_module import make_motion_module, run_motion_module
from model.audio_attention import AudioAttentionModule
from model.projections import AudioProj, ImageProj, audio_windows


def test_face_locator_maps_pixels_to_latent_grid_and_starts_at_zero():
    locator = FaceLocator(3, (8, 8, 16, 16), 32)
    out = locator(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 32, 8, 8)
    assert not out.any()  # zero-initialised last conv


def test_image_proj_tokens():
    proj = ImageProj(512, 4, 32)
    assert proj(torch.randn(3, 512)).shape == (3, 4, 32)


def test_audio_proj_tokens_per_frame():
    proj = AudioProj(window=2, num_layers=4, feature_dim=32, hidden_dim=16, num_tokens=4, token_dim=32)
    assert proj(torch.randn(2, 6, 5, 4, 32)).shape == (2, 6, 4, 32)


def test_audio_windows_clamp_at_both_edges():
    feats = torch.arange(10.0)[:, None, None].expand(10, 2, 3)
    win = audio_windows(feats, start=0, frames=3, window=2)
    assert win.shape == (3, 5, 2, 3)
    assert win[0, :, 0, 0].tolist() == [0, 0, 0, 1, 2]
    tail = audio_windows(feats, start=8, frames=4, window=2)  # runs past the end: clamped
    assert tail[:, 2, 0, 0].tolist() == [8, 9, 9, 9]
    assert tail[1, :, 0, 0].tolist() == [7, 8, 9, 9, 9]


def test_motion_module_is_identity_at_init_and_drops_motion_frames():
    module = make_motion_module(32, 8, 32, 8)
    x = torch.randn(2 * 5, 32, 4, 4)
    assert torch.equal(run_motion_module(module, x, 5, None), x)
    torch.nn.init.normal_(module.proj_out.weight, std=0.1)
    motion = torch.randn(2, 2, 32, 4, 4)
    out = run_motion_module(module, x, 5, motion)
    assert out.shape == x.shape
    assert not torch.allclose(out, run_motion_module(module, x, 5, None))


def test_audio_module_is_identity_at_init():
    module = AudioAttentionModule(32, 16, 2, 16, 8)  # 32 channels, run at an inner width of 16 (as Hallo sizes some)
    x = torch.randn(6, 32, 4, 4)
    out = module(x, torch.randn(6, 4, 16), torch.rand(6, 3, 16))
    assert torch.equal(out, x)


def test_reference_features_and_unet_output_shapes(tiny_net, batch, tiny):
    cond = tiny_net.encode(batch.ref, batch.motion, batch.embedding, batch.face_mask, batch.audio, batch.regions)
    # one reference entry per spatial transformer block of the 2D UNet
    assert sorted(cond.reference) == sorted(
        n[: -len(".attn1")] for n, _ in tiny_net.reference_unet.named_modules() if n.endswith(".attn1")
    )
    ref = cond.reference["down_blocks.0.attentions.0.transformer_blocks.0"]
    assert ref.shape == (2, tiny.latent_size**2, 32)
    assert cond.motion["mid_block.attentions.0"].shape == (2, tiny.train_motion_frames, 16, 64)
    assert cond.face_tokens.shape == (2, tiny.image_tokens, 32)
    assert cond.audio_tokens.shape == (2, tiny.train_frames, tiny.audio_tokens, 32)
    assert cond.face_features.shape == (2, 32, tiny.latent_size, tiny.latent_size)
    with torch.no_grad():
        out = tiny_net.denoise(batch.noisy, torch.tensor([5, 900]), cond)
    assert out.shape == batch.noisy.shape


def test_clip_plus_motion_frames_must_fit_the_positional_table(tiny_net, tiny):
    unet = tiny_net.denoising_unet
    motion = {"mid_block.attentions.0": torch.zeros(1, 2, 16, 64)}
    with pytest.raises(ValueError, match="exceed"):
        unet(torch.zeros(1, 4, 31, 8, 8), 1, torch.zeros(1, 4, 32), motion_frames=motion)


def test_image_level_forward_skips_motion_and_audio_modules(tiny_net, batch):
    """Stage-1 style: one frame, no audio, temporal=False; motion/audio weights play no part."""
    args = (batch.noisy[:, :, :1], 10, batch.ref, None, batch.embedding, batch.face_mask)
    with torch.no_grad():
        before = tiny_net(*args, temporal=False)
        for p in [*tiny_net.denoising_unet.motion_modules.parameters(), *tiny_net.denoising_unet.audio_modules.parameters()]:
            p.add_(1.0)
        assert torch.equal(before, tiny_net(*args, temporal=False))
    assert before.shape == (2, 4, 1, 8, 8)
