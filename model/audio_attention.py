"""Hallo's hierarchical audio-visual cross-attention (one module after each spatial transformer).

    h = proj_in(GroupNorm(x))                       (channels -> inner width)
    h += SelfAttn(LN1 h)
    n = LN2 h
    h += w_pose * P_pose(Attn_pose(n, audio) * M_pose)
       + w_face * P_face(Attn_face(n, audio) * M_face)
       + w_lip  * P_lip (Attn_lip (n, audio) * M_lip)
    h += FF(LN3 h)
    out = x + proj_out(h)                           (inner width -> channels)

Every frame attends to its own audio tokens. The P_* are zero-initialised 1x1 projections (the
learned adaptive weighting); w_* are the user's weights at generation (1 in training). proj_out is
zero-initialised too (unlike the reference), so a fresh module is the identity and stage 2 starts
exactly from the stage-1 UNet. The 1x1 projections are Linear layers: the reference's 1x1 convs hold
the same numbers (a reshape, see model/hallo_checkpoint.py).

The inner width follows the reference (`hallo_inner_width`), so that its released weights fit.
"""
from __future__ import annotations

from typing import Sequence

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from torch import nn

from model.unet_layout import Level, PerLevel

REGIONS = ("pose", "face", "lip")  # order of the mask channels and of the user weights


def _zero_linear(dim_in: int, dim_out: int) -> nn.Linear:
    layer = nn.Linear(dim_in, dim_out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def hallo_inner_width(level: Level, layer: int) -> int:
    """The reference sizes an audio module by its block's `in_channels` argument, not the block's width.

    That is the width entering a down block (its first layer only) and the skip width of an up block
    (all its layers): at SD-1.5 size 8 of the 16 modules run at half their block's width.
    """
    if level.kind == "up_blocks" or (level.kind == "down_blocks" and layer == 0):
        return (level.in_channels // level.heads) * level.heads
    return (level.channels // level.heads) * level.heads


class AudioAttentionModule(nn.Module):
    def __init__(self, channels: int, inner: int, heads: int, audio_dim: int, norm_groups: int) -> None:
        super().__init__()
        dim_head = inner // heads
        self.norm = nn.GroupNorm(norm_groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner)
        self.norm1 = nn.LayerNorm(inner)
        self.attn1 = Attention(inner, heads=heads, dim_head=dim_head)
        self.norm2 = nn.LayerNorm(inner)
        self.audio_attn = nn.ModuleList(
            Attention(inner, cross_attention_dim=audio_dim, heads=heads, dim_head=dim_head) for _ in REGIONS
        )
        self.region_proj = nn.ModuleList(_zero_linear(inner, inner) for _ in REGIONS)
        self.norm3 = nn.LayerNorm(inner)
        self.ff = FeedForward(inner, activation_fn="geglu")
        self.proj_out = _zero_linear(inner, channels)

    def forward(
        self,
        hidden_states: torch.Tensor,
        audio_tokens: torch.Tensor,
        region_masks: torch.Tensor,
        weights: Sequence[float] = (1.0, 1.0, 1.0),
    ) -> torch.Tensor:
        """hidden_states (n, c, h, w); audio_tokens (n, tokens, audio_dim); region_masks (n, 3, h*w)."""
        n, c, height, width = hidden_states.shape
        x = self.norm(hidden_states).permute(0, 2, 3, 1).reshape(n, height * width, c)
        x = self.proj_in(x)
        x = x + self.attn1(self.norm1(x))
        normed = self.norm2(x)
        masks = region_masks.to(x.dtype)
        for k, weight in enumerate(weights):
            attended = self.audio_attn[k](normed, encoder_hidden_states=audio_tokens)
            x = x + weight * self.region_proj[k](attended * masks[:, k, :, None])
        x = x + self.ff(self.norm3(x))
        x = self.proj_out(x).reshape(n, height, width, c).permute(0, 3, 1, 2)
        return hidden_states + x


def build_audio_modules(levels: list[Level], audio_dim: int, norm_groups: int) -> PerLevel:
    """One audio module after each spatial transformer (levels without cross-attention get none)."""
    return PerLevel(
        levels,
        lambda level, layer: AudioAttentionModule(
            level.channels, hallo_inner_width(level, layer), level.heads, audio_dim, norm_groups
        )
        if level.cross_attention
        else None,
    )
