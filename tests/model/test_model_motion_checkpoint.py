"""The AnimateDiff v2 key mapping, checked against a state dict built from the published layout."""
from __future__ import annotations

import math

import pytest
import torch

from model.motion_checkpoint import (
    MotionCheckpointError,
    load_motion_checkpoint,
    map_animatediff_state_dict,
    to_animatediff_state_dict,
)
from model.presets import get_preset
from model.unet3d import DenoisingUNet3D


def sinusoid_table(max_len: int, dim: int) -> torch.Tensor:
    pos = torch.arange(max_len)[:, None].float()
    div = torch.exp(torch.arange(0, dim, 2).float() * (-math.log(10000.0) / dim))
    pe = torch.zeros(1, max_len, dim)
    pe[0, :, 0::2] = torch.sin(pos * div)
    pe[0, :, 1::2] = torch.cos(pos * div)
    return pe


def published_layout(channels: list[int], layers: int, max_len: int = 32) -> dict[str, tuple[int, ...]]:
    """Names and shapes of mm_sd_v15_v2.ckpt (AnimateDiff v2), written out independently of model/."""
    shapes: dict[str, tuple[int, ...]] = {}

    def module(prefix: str, c: int) -> None:
        tt = f"{prefix}.temporal_transformer."
        shapes.update({tt + "norm.weight": (c,), tt + "norm.bias": (c,)})
        for proj in ("proj_in", "proj_out"):
            shapes.update({f"{tt}{proj}.weight": (c, c), f"{tt}{proj}.bias": (c,)})
        tb = tt + "transformer_blocks.0."
        for a in (0, 1):
            ab = f"{tb}attention_blocks.{a}."
            shapes.update({ab + f"{p}.weight": (c, c) for p in ("to_q", "to_k", "to_v", "to_out.0")})
            shapes.update({ab + "to_out.0.bias": (c,), ab + "pos_encoder.pe": (1, max_len, c)})
            shapes.update({f"{tb}norms.{a}.weight": (c,), f"{tb}norms.{a}.bias": (c,)})
        shapes.update({tb + "ff.net.0.proj.weight": (8 * c, c), tb + "ff.net.0.proj.bias": (8 * c,)})
        shapes.update({tb + "ff.net.2.weight": (c, 4 * c), tb + "ff.net.2.bias": (c,)})
        shapes.update({tb + "ff_norm.weight": (c,), tb + "ff_norm.bias": (c,)})

    for i, c in enumerate(channels):
        for j in range(layers):
            module(f"down_blocks.{i}.motion_modules.{j}", c)
    module("mid_block.motion_modules.0", channels[-1])
    for i, c in enumerate(reversed(channels)):
        for j in range(layers + 1):
            module(f"up_blocks.{i}.motion_modules.{j}", c)
    return shapes


def synthetic_checkpoint(shapes: dict[str, tuple[int, ...]], device: str = "cpu") -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    out = {}
    for key, shape in shapes.items():
        if key.endswith("pos_encoder.pe"):
            out[key] = sinusoid_table(shape[1], shape[2])
        elif device == "meta":
            out[key] = torch.empty(shape, device="meta")
        else:
            out[key] = torch.randn(shape, generator=gen)
    return out


def test_sd15_motion_modules_match_animatediff_v2_one_to_one():
    preset = get_preset("sd15")
    with torch.device("meta"):
        unet = DenoisingUNet3D(unet=preset.unet, audio_dim=768)
    layout = published_layout(preset.unet["block_out_channels"], preset.unet["layers_per_block"])
    assert len(layout) == 21 * 28  # 21 modules x 28 tensors
    target = unet.motion_modules.state_dict()
    report = map_animatediff_state_dict(synthetic_checkpoint(layout, "meta"), target)
    assert report.ok, report.summary()
    assert set(report.tensors) == set(target)  # every tensor of ours is covered; the 2 pe copies share one buffer
    assert len(target) == len(layout) - 21
    params = sum(v.numel() for k, v in target.items() if not k.endswith(".pe"))
    assert params == 453_209_280


def test_tiny_checkpoint_loads_values_and_round_trips(tiny, tmp_path):
    unet = DenoisingUNet3D(unet=tiny.unet, audio_dim=32)
    layout = published_layout(tiny.unet["block_out_channels"], tiny.unet["layers_per_block"])
    ckpt = synthetic_checkpoint(layout)
    torch.save(ckpt, tmp_path / "mm.ckpt")
    report = load_motion_checkpoint(unet.motion_modules, tmp_path / "mm.ckpt")
    assert len(report.tensors) == len(unet.motion_modules.state_dict())
    key = "up_blocks.1.motion_modules.1.temporal_transformer.transformer_blocks.0.attention_blocks.1.to_v.weight"
    assert torch.equal(unet.motion_modules.up_blocks[1][1].transformer_blocks[0].attn2.to_v.weight, ckpt[key])
    assert torch.equal(unet.motion_modules.mid_block[0][0].transformer_blocks[0].norm3.weight,
                       ckpt["mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0.ff_norm.weight"])
    exported = to_animatediff_state_dict(unet.motion_modules)
    assert exported.keys() == ckpt.keys()
    assert all(torch.equal(exported[k], ckpt[k]) for k in ckpt)


@pytest.mark.parametrize("change", ["extra", "missing", "shape", "pe"])
def test_loader_fails_on_anything_unexpected(tiny, tmp_path, change):
    unet = DenoisingUNet3D(unet=tiny.unet, audio_dim=32)
    ckpt = synthetic_checkpoint(published_layout(tiny.unet["block_out_channels"], tiny.unet["layers_per_block"]))
    key = "down_blocks.1.motion_modules.0.temporal_transformer.proj_in.weight"
    if change == "extra":
        ckpt["down_blocks.1.motion_modules.0.temporal_transformer.extra.weight"] = torch.zeros(1)
    elif change == "missing":
        del ckpt[key]
    elif change == "shape":
        ckpt[key] = torch.zeros(3, 3)
    else:  # v1 checkpoints have 24 positions, not 32
        pe = "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe"
        ckpt[pe] = sinusoid_table(24, 32)
    torch.save(ckpt, tmp_path / "mm.ckpt")
    before = {k: v.clone() for k, v in unet.motion_modules.state_dict().items()}
    with pytest.raises(MotionCheckpointError, match={"extra": "unexpected", "missing": "missing"}.get(change, "mismatched")):
        load_motion_checkpoint(unet.motion_modules, tmp_path / "mm.ckpt")
    assert all(torch.equal(before[k], v) for k, v in unet.motion_modules.state_dict().items())


def test_our_positional_table_is_animatediffs(tiny):
    unet = DenoisingUNet3D(unet=tiny.unet, audio_dim=32)
    pe = unet.motion_modules.down_blocks[0][0].transformer_blocks[0].pos_embed.pe
    assert torch.allclose(pe, sinusoid_table(32, 32))
