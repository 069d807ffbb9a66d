"""Model sizes: `sd15` (the paper's SD-1.5 scale) and `tiny` (CPU tests and the demo).

A preset holds the configs of the pretrained bases (SD UNet, VAE, wav2vec2) and Hallo's own
hyper-parameters; `python -m model.presets sd15` prints one. `python -m model.sizes sd15` builds the
whole model on the meta device and prints parameter counts per component.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass, field
from typing import Any, Optional


SD15_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}

SD15_VAE: dict[str, Any] = {  # sd-vae-ft-mse
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 256,
    "scaling_factor": 0.18215,
}

TINY_UNET: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    # one block with and one without cross-attention, like SD's deepest level
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "cross_attention_dim": 32,
    "attention_head_dim": 2,
    "norm_num_groups": 8,
}

TINY_VAE: dict[str, Any] = {
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [8, 8, 16, 16],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 4,
    "sample_size": 64,
    "scaling_factor": 0.18215,
}

# wav2vec2-base keeps the conv front end (320x downsampling); only the transformer shrinks.
TINY_WAV2VEC2: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": [16] * 7,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
}

SD15_WAV2VEC2: dict[str, Any] = {"hidden_size": 768, "num_hidden_layers": 12}


@dataclass(frozen=True)
class Preset:
    """Everything that fixes tensor shapes. Base configs must match the weights loaded into them."""

    name: str
    resolution: int = 512
    train_frames: int = 14
    train_motion_frames: int = 2
    infer_frames: int = 16
    infer_motion_frames: int = 2
    unet: dict = field(default_factory=lambda: dict(SD15_UNET))
    vae: dict = field(default_factory=lambda: dict(SD15_VAE))
    wav2vec2: dict = field(default_factory=lambda: dict(SD15_WAV2VEC2))
    face_embed_dim: int = 512
    image_tokens: int = 4
    face_locator_channels: tuple[int, ...] = (16, 32, 64, 128)
    audio_window: int = 2
    audio_hidden: int = 512
    audio_tokens: int = 32
    audio_token_dim: Optional[int] = None  # width of the audio tokens; None = the UNet's cross_attention_dim (768 both in Hallo)
    motion_heads: int = 8
    motion_max_len: int = 32

    @property
    def latent_size(self) -> int:
        return self.resolution // 8

    @property
    def audio_layers(self) -> int:
        return int(self.wav2vec2["num_hidden_layers"])

    @property
    def audio_dim(self) -> int:
        return int(self.wav2vec2["hidden_size"])


PRESETS: dict[str, Preset] = {
    "sd15": Preset(name="sd15"),
    "tiny": Preset(
        name="tiny",
        resolution=64,
        train_frames=6,
        infer_frames=8,
        unet=dict(TINY_UNET),
        vae=dict(TINY_VAE),
        wav2vec2=dict(TINY_WAV2VEC2),
        face_locator_channels=(8, 8, 16, 16),
        audio_hidden=32,
        audio_tokens=4,
    ),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


def with_base_configs(preset: Preset, unet: dict, wav2vec2: dict) -> Preset:
    """The preset with the UNet/wav2vec2 shapes read from real base weights (their configs win)."""
    keys = ("hidden_size", "num_hidden_layers")
    return dataclasses.replace(preset, unet=dict(unet), wav2vec2={k: wav2vec2[k] for k in keys})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", choices=sorted(PRESETS))
    preset = get_preset(parser.parse_args(argv).preset)
    for f in dataclasses.fields(preset):
        print(f"{f.name}: {getattr(preset, f.name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
