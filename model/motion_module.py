"""AnimateDiff v2 motion modules and Hallo's motion frames.

Each module: GroupNorm -> Linear proj_in -> one transformer block with two temporal self-attentions
(sinusoidal positions, max 32 frames) and a GEGLU feed-forward -> proj_out, plus the residual.
The GroupNorm normalises every frame on its own, as AnimateDiff and Hallo do; diffusers'
`AnimateDiffTransformer3D` (whose layout and key names we keep) normalises across all frames, which
with the same weights gives other numbers, more so when the motion frames are prepended.
Hallo puts the previous clip's motion-frame features in front of the clip on the time axis before
every motion module and slices them off afterwards; that is how one clip continues the last.
"""
from __future__ import annotations

import torch
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D
from torch import nn

from model.unet_layout import Level, PerLevel


class MotionModule(AnimateDiffTransformer3D):
    """diffusers' AnimateDiff transformer with AnimateDiff's per-frame GroupNorm."""

    def forward(self, hidden_states: torch.Tensor, num_frames: int = 1) -> torch.Tensor:  # type: ignore[override]
        """hidden_states (b*f, c, h, w), frames folded into the batch -> the same shape."""
        batch_frames, channels, height, width = hidden_states.shape
        batch = batch_frames // num_frames
        x = self.norm(hidden_states)  # frames are in the batch dimension: normalised one by one
        x = x.reshape(batch, num_frames, channels, height, width).permute(0, 3, 4, 1, 2)
        x = self.proj_in(x.reshape(batch * height * width, num_frames, channels))
        for block in self.transformer_blocks:
            x = block(x)
        x = self.proj_out(x).reshape(batch, height, width, num_frames, channels).permute(0, 3, 4, 1, 2)
        return hidden_states + x.reshape(batch_frames, channels, height, width)


def make_motion_module(channels: int, heads: int, max_len: int, norm_groups: int) -> MotionModule:
    module = MotionModule(
        num_attention_heads=heads,
        attention_head_dim=channels // heads,
        in_channels=channels,
        norm_num_groups=norm_groups,
        activation_fn="geglu",
        attention_bias=False,
        double_self_attention=True,
        positional_embeddings="sinusoidal",
        num_positional_embeddings=max_len,
    )
    # AnimateDiff zero-initialises proj_out so a fresh module is the identity (residual only).
    nn.init.zeros_(module.proj_out.weight)
    nn.init.zeros_(module.proj_out.bias)
    return module


def build_motion_modules(levels: list[Level], heads: int, max_len: int, norm_groups: int) -> PerLevel:
    """A motion module after every layer of every down/mid/up block, with or without cross-attention."""
    return PerLevel(levels, lambda level, _layer: make_motion_module(level.channels, heads, max_len, norm_groups))


def run_motion_module(
    module: MotionModule,
    hidden_states: torch.Tensor,
    frames: int,
    motion_frames: torch.Tensor | None,
) -> torch.Tensor:
    """hidden_states (b*f, c, h, w); motion_frames (b, m, c, h, w) prepended in time, then dropped."""
    if motion_frames is None or motion_frames.shape[1] == 0:
        return module(hidden_states, num_frames=frames)
    bf, c, h, w = hidden_states.shape
    b, m = bf // frames, motion_frames.shape[1]
    clip = hidden_states.reshape(b, frames, c, h, w)
    joined = torch.cat([motion_frames.to(clip.dtype), clip], dim=1).reshape(b * (m + frames), c, h, w)
    out = module(joined, num_frames=m + frames)
    return out.reshape(b, m + frames, c, h, w)[:, m:].reshape(bf, c, h, w)
