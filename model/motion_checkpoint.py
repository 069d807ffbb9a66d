"""Explicit key mapping between AnimateDiff's `mm_sd_v15_v2.ckpt` and our motion modules.

AnimateDiff:  down_blocks.0.motion_modules.1.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_q.weight
ours:         down_blocks.0.1.transformer_blocks.0.attn1.to_q.weight   (inside `DenoisingUNet3D.motion_modules`)

Renames inside a block: attention_blocks.{0,1} -> attn{1,2}, norms.{0,1} -> norm{1,2}, ff_norm -> norm3.
AnimateDiff stores its sinusoidal table once per attention block (`pos_encoder.pe`); diffusers shares one
`pos_embed.pe` per block, so both copies must agree. Loading fails on any unexpected, missing or
mis-shaped tensor and names them all.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from model.unet_layout import PerLevel
from model.state_mapping import StateMapping, map_state_dict

_PREFIX = re.compile(r"^(down_blocks|up_blocks|mid_block)\.(?:(\d+)\.)?motion_modules\.(\d+)\.temporal_transformer\.(.+)$")
_PE = re.compile(r"^transformer_blocks\.(\d+)\.attention_blocks\.([01])\.pos_encoder\.pe$")
_RENAMES = (
    (".attention_blocks.0.", ".attn1."),
    (".attention_blocks.1.", ".attn2."),
    (".norms.0.", ".norm1."),
    (".norms.1.", ".norm2."),
    (".ff_norm.", ".norm3."),
)


class MotionCheckpointError(ValueError):
    """The checkpoint does not match the motion modules one to one."""


def animatediff_to_ours(key: str) -> str | None:
    """Our key for an AnimateDiff key, or None when the key is not a motion-module tensor."""
    match = _PREFIX.match(key)
    if match is None:
        return None
    kind, block, layer, rest = match.groups()
    if (kind == "mid_block") != (block is None):
        return None
    pe = _PE.match(rest)
    if pe is not None:
        rest = f"transformer_blocks.{pe.group(1)}.pos_embed.pe"
    else:
        rest = "." + rest
        for old, new in _RENAMES:
            rest = rest.replace(old, new)
        rest = rest[1:]
    return f"{kind}.{block or 0}.{layer}.{rest}"


def ours_to_animatediff(key: str) -> list[str]:
    """AnimateDiff key(s) for one of our keys (the shared positional table maps to two)."""
    kind, block, layer, rest = key.split(".", 3)
    prefix = f"{kind}.motion_modules.{layer}" if kind == "mid_block" else f"{kind}.{block}.motion_modules.{layer}"
    pe = re.match(r"^transformer_blocks\.(\d+)\.pos_embed\.pe$", rest)
    if pe is not None:
        return [
            f"{prefix}.temporal_transformer.transformer_blocks.{pe.group(1)}.attention_blocks.{a}.pos_encoder.pe"
            for a in (0, 1)
        ]
    rest = "." + rest
    for old, new in _RENAMES:
        rest = rest.replace(new, old)
    return [f"{prefix}.temporal_transformer.{rest[1:]}"]


def map_animatediff_state_dict(state_dict: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> StateMapping:
    """Map every checkpoint tensor onto `target` (our state dict); the report says what does not fit."""
    return map_state_dict(state_dict, target, animatediff_to_ours, atol=1e-3)


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    data = torch.load(path, map_location="cpu", weights_only=True)
    return data.get("state_dict", data)


def load_motion_checkpoint(motion_modules: PerLevel, path: str | Path) -> StateMapping:
    """Load `mm_sd_v15_v2.ckpt` (or a stand-in with its layout) into the motion modules, strictly."""
    report = map_animatediff_state_dict(read_checkpoint(path), motion_modules.state_dict())
    if not report.ok:
        raise MotionCheckpointError(f"motion checkpoint {path} does not fit: {report.summary()}")
    motion_modules.load_state_dict(report.tensors, strict=True)
    return report


def to_animatediff_state_dict(motion_modules: PerLevel) -> dict[str, torch.Tensor]:
    """Our motion modules in AnimateDiff's layout (for stand-in checkpoints and export)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in motion_modules.state_dict().items():
        for ad_key in ours_to_animatediff(key):
            out[ad_key] = value.clone()
    return out
