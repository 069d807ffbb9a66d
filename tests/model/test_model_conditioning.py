"""Each condition does what it should: reference attention, motion frames, audio region weights, CFG drop."""
from __future__ import annotations

import torch

from model.weights_behaviour import ModelBehaviour
from model.net import UNCONDITIONAL, Drop, unconditional


def _denoise(net, batch, *, ref=None, motion=None, drop=Drop(), weights=(1.0, 1.0, 1.0)):
    with torch.no_grad():
        cond = net.encode(
            batch.ref if ref is None else ref,
            batch.motion if motion is None else motion,
            batch.embedding,
            batch.face_mask,
            batch.audio,
            batch.regions,
            drop,
        )
        return net.denoise(batch.noisy, torch.tensor([10, 700]), cond, audio_weights=weights)


def test_reference_image_changes_the_output_only_through_reference_attention(tiny_net, batch):
    other = batch.ref + torch.randn_like(batch.ref)
    base = _denoise(tiny_net, batch)
    assert not torch.allclose(base, _denoise(tiny_net, batch, ref=other), atol=1e-5)
    # without reference attention the reference latent has no way in (motion frames held fixed)
    dropped = _denoise(tiny_net, batch, drop=Drop(reference=True))
    assert torch.allclose(dropped, _denoise(tiny_net, batch, ref=other, drop=Drop(reference=True)), atol=1e-6)
    assert not torch.allclose(base, dropped, atol=1e-5)


def test_motion_frames_change_the_first_frames(tiny_net, batch):
    base = _denoise(tiny_net, batch)
    moved = _denoise(tiny_net, batch, motion=batch.motion.flip(1) + 1.0)
    first = (base[:, :, 0] - moved[:, :, 0]).abs().max()
    assert first > 1e-4


def test_lip_weight_zero_removes_exactly_the_lip_branch(tiny_net, batch):
    full = _denoise(tiny_net, batch)
    no_lip = _denoise(tiny_net, batch, weights=(1.0, 1.0, 0.0))
    assert not torch.allclose(full, no_lip, atol=1e-5)
    # the same as zeroing every lip projection (the lip branch's whole contribution)
    with torch.no_grad():
        for _, module in tiny_net.denoising_unet.audio_modules.items():
            module.region_proj[2].weight.zero_()
            module.region_proj[2].bias.zero_()
    assert torch.allclose(no_lip, _denoise(tiny_net, batch), atol=1e-6)


def test_unconditional_branch_ignores_identity_face_region_and_audio(tiny_net, batch):
    """CFG's unconditional branch keeps only the noisy clip and the motion frames."""
    uncond = _denoise(tiny_net, batch, drop=UNCONDITIONAL)
    batch.embedding = torch.randn_like(batch.embedding)
    batch.face_mask = torch.rand_like(batch.face_mask)
    batch.audio = torch.randn_like(batch.audio)
    assert torch.allclose(uncond, _denoise(tiny_net, batch, drop=UNCONDITIONAL), atol=1e-6)
    assert not torch.allclose(uncond, _denoise(tiny_net, batch), atol=1e-5)


def test_unconditional_branch_keeps_the_face_region_for_weights_that_never_trained_without_it(tiny_net, batch):
    assert unconditional(ModelBehaviour(uncond_face_region="drop")) == UNCONDITIONAL  # Hallo's, and ours when trained
    keep = unconditional(ModelBehaviour(uncond_face_region="keep"))
    kept = _denoise(tiny_net, batch, drop=keep)
    assert not torch.allclose(kept, _denoise(tiny_net, batch, drop=UNCONDITIONAL), atol=1e-5)
    batch.embedding, batch.audio = torch.randn_like(batch.embedding), torch.randn_like(batch.audio)
    assert torch.allclose(kept, _denoise(tiny_net, batch, drop=keep), atol=1e-6)  # the rest is still dropped
    batch.face_mask = torch.rand_like(batch.face_mask)
    assert not torch.allclose(kept, _denoise(tiny_net, batch, drop=keep), atol=1e-5)
