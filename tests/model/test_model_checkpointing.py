"""Gradient checkpointing changes memory, never results: every motion module still runs."""
from __future__ import annotations

import torch


def _loss_and_grads(net, batch):
    net.zero_grad()
    out = net(*batch.args())
    out.pow(2).mean().backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    return out.detach(), grads


def test_checkpointing_gives_the_same_output_and_gradients(tiny_net, batch):
    tiny_net.train()
    out_plain, grads_plain = _loss_and_grads(tiny_net, batch)
    tiny_net.denoising_unet.enable_gradient_checkpointing()
    tiny_net.reference_unet.enable_gradient_checkpointing()
    out_ckpt, grads_ckpt = _loss_and_grads(tiny_net, batch)
    assert torch.allclose(out_plain, out_ckpt, atol=1e-6)
    assert grads_plain.keys() == grads_ckpt.keys()
    for name in grads_plain:
        assert torch.allclose(grads_plain[name], grads_ckpt[name], atol=1e-6, rtol=1e-4), name
    # the motion modules of the blocks without cross-attention (the reference skips them) get gradients
    for prefix in ("denoising_unet.motion_modules.down_blocks.1.0.", "denoising_unet.motion_modules.up_blocks.0.1."):
        assert any(n.startswith(prefix) and g.abs().sum() > 0 for n, g in grads_ckpt.items()), prefix
