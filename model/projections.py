"""Image projection (face embedding -> context tokens) and audio projection (wav2vec2 window ->
audio tokens per frame), plus the one helper that builds the audio windows for training and generation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn


class ImageProj(ModelMixin, ConfigMixin):
    """Linear(embed_dim -> tokens * token_dim) -> (tokens, token_dim) -> LayerNorm."""

    @register_to_config
    def __init__(self, embed_dim: int = 512, num_tokens: int = 4, token_dim: int = 768) -> None:
        super().__init__()
        self.proj = nn.Linear(embed_dim, num_tokens * token_dim)
        self.norm = nn.LayerNorm(token_dim)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        """(b, embed_dim) -> (b, num_tokens, token_dim)."""
        tokens = self.proj(embedding).reshape(embedding.shape[0], self.config.num_tokens, self.config.token_dim)
        return self.norm(tokens)


class AudioProj(ModelMixin, ConfigMixin):
    """Per frame: the (2*window+1, layers, dim) wav2vec2 window, flattened -> MLP -> (tokens, token_dim)."""

    @register_to_config
    def __init__(
        self,
        window: int = 2,
        num_layers: int = 12,
        feature_dim: int = 768,
        hidden_dim: int = 512,
        num_tokens: int = 32,
        token_dim: int = 768,
    ) -> None:
        super().__init__()
        in_dim = (2 * window + 1) * num_layers * feature_dim
        self.proj1 = nn.Linear(in_dim, hidden_dim)
        self.proj2 = nn.Linear(hidden_dim, hidden_dim)
        self.proj3 = nn.Linear(hidden_dim, num_tokens * token_dim)
        self.norm = nn.LayerNorm(token_dim)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """(b, f, 2*window+1, layers, dim) -> (b, f, num_tokens, token_dim)."""
        b, f = windows.shape[:2]
        x = F.relu(self.proj1(windows.reshape(b * f, -1)))
        x = F.relu(self.proj2(x))
        x = self.proj3(x).reshape(b, f, self.config.num_tokens, self.config.token_dim)
        return self.norm(x)


def audio_windows(features: torch.Tensor, start: int, frames: int, window: int) -> torch.Tensor:
    """Windows of +-`window` frames around video frames start..start+frames-1, indices clamped.

    features (T, layers, dim) -> (frames, 2*window+1, layers, dim). Clamping handles the clip edges
    and frames past the audio's end (generation pads the last clip; training never indexes out of range).
    """
    centres = torch.arange(start, start + frames, device=features.device)
    offsets = torch.arange(-window, window + 1, device=features.device)
    index = (centres[:, None] + offsets[None, :]).clamp(0, features.shape[0] - 1)
    return features[index]
