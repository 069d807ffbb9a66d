"""The denoising 3D UNet: SD-1.5's 2D UNet run on frames folded into the batch, plus motion modules
and hierarchical audio modules after every layer.

`spatial` is a stock `UNet2DConditionModel` (same parameter names as the SD-1.5 UNet, so its weights
load as they are). Its blocks are run layer by layer here because the reference order inside each
layer is: resnet -> spatial transformer (reference attention, cross-attention to the face tokens)
-> audio module -> motion module. The motion modules of the blocks without cross-attention (the 8x8
level at SD-1.5 size) run unless `plain_block_motion=False` (Hallo's released model skips them:
ModelBehaviour.motion_in_plain_blocks); gradient checkpointing never changes which modules run.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Sequence, Union

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import register_to_config
from torch import nn

from model.audio_attention import build_audio_modules
from model.unet_layout import Level, unet_levels
from model.motion_module import build_motion_modules, run_motion_module
from model.reference_attention import install_reference_processors


# Region masks (pose, face, lip channels): one tensor (b, 3, H, W) or per frame (b, f, 3, H, W), resized to
# every resolution; or a pyramid of such tensors, largest first (e.g. rasterised per resolution, as the
# reference does), each used where its size matches and the first resized for any other size.
RegionMasks = Union[torch.Tensor, Sequence[torch.Tensor]]


def unet_config_dict(unet: UNet2DConditionModel) -> dict[str, Any]:
    """A UNet2DConditionModel's constructor arguments (without diffusers' private keys)."""
    return {k: v for k, v in unet.config.items() if not k.startswith("_")}


def attention_name(level: Level, layer: int) -> str:
    """Path of the spatial transformer after `layer` of `level`, e.g. `up_blocks.1.attentions.2`."""
    return f"{level.kind}.{level.index}.attentions.{layer}" if level.kind != "mid_block" else "mid_block.attentions.0"


# Stored in every saved config.json under UNet2D/3DConditionModel's own key: loading this folder into one of
# those classes fails on it ("... does not exist.") instead of silently starting from random weights.
# This class drops the key on load (_compatibles).
NOT_A_PLAIN_UNET = ("hallo-forge's DenoisingUNet3D (load it with model.unet3d.DenoisingUNet3D.from_pretrained or "
                    "DiffusionPipeline.from_pretrained(EXPORT, trust_remote_code=True)); its block type")


class DenoisingUNet3D(ModelMixin, ConfigMixin):
    _supports_gradient_checkpointing = True
    _compatibles = ["UNet2DConditionModel", "UNet3DConditionModel"]

    @register_to_config
    def __init__(self, unet: dict, audio_dim: int = 768, motion_heads: int = 8, motion_max_len: int = 32) -> None:
        super().__init__()
        poison = [NOT_A_PLAIN_UNET] * 4  # as many as those classes' default block_out_channels: the block check fails
        self.register_to_config(down_block_types=poison, up_block_types=poison)
        self.spatial = UNet2DConditionModel(**unet)
        self.levels = unet_levels(dict(unet))
        groups = int(self.spatial.config.norm_num_groups)
        self.motion_modules = build_motion_modules(self.levels, motion_heads, motion_max_len, groups)
        self.audio_modules = build_audio_modules(self.levels, audio_dim, groups)
        install_reference_processors(self.spatial, "read")
        self.gradient_checkpointing = False

    @classmethod
    def from_unet2d(cls, unet: UNet2DConditionModel, **kwargs: Any) -> "DenoisingUNet3D":
        """Inflate a 2D UNet: its weights become the spatial part; motion/audio modules start fresh."""
        model = cls(unet=unet_config_dict(unet), **kwargs)
        model.spatial.load_state_dict(unet.state_dict())
        return model

    def plain_block_motion_modules(self) -> list[nn.Module]:
        """The motion modules of the blocks without cross-attention (skipped when plain_block_motion=False)."""
        return [m for level in self.levels if not level.cross_attention
                for m in getattr(self.motion_modules, level.kind)[level.index]]

    def _run(self, fn: Callable[..., torch.Tensor], *args: Any) -> torch.Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return self._gradient_checkpointing_func(fn, *args)
        return fn(*args)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        encoder_hidden_states: torch.Tensor,
        *,
        reference: dict[str, torch.Tensor] | None = None,
        motion_frames: dict[str, torch.Tensor] | None = None,
        face_features: torch.Tensor | None = None,
        audio_tokens: torch.Tensor | None = None,
        region_masks: RegionMasks | None = None,
        reference_rows: torch.Tensor | None = None,
        audio_weights: Sequence[float] = (1.0, 1.0, 1.0),
        temporal: bool = True,
        plain_block_motion: bool = True,
    ) -> torch.Tensor:
        """Predict (b, c, f, h, w) from noisy latents `sample` (b, c, f, h, w).

        encoder_hidden_states: (b, n, d) face tokens. reference: transformer-block path -> (b, tokens, c)
        (None = no reference attention); reference_rows: (b,) bool, the samples that attend to it (None = all).
        motion_frames: attention path -> (b, m, tokens, c).
        face_features: (b, c0, h, w) or (b, c0, f, h, w), added after conv_in. audio_tokens: (b, f, n, d)
        (None skips the audio modules). region_masks: see RegionMasks. temporal=False skips the motion
        modules (image-level training); plain_block_motion=False skips those of the blocks without
        cross-attention.
        """
        b, _, frames, height, width = sample.shape
        spatial = self.spatial
        longest = frames + max((int(v.shape[1]) for v in (motion_frames or {}).values()), default=0)
        if temporal and longest > self.config.motion_max_len:
            raise ValueError(f"{longest} frames (clip + motion frames) exceed the motion modules' {self.config.motion_max_len}")
        factor = 2 ** (len(spatial.down_blocks) - 1)
        if height % factor or width % factor:
            raise ValueError(f"latent size {height}x{width} must be divisible by {factor} (the UNet's downsampling)")
        x = sample.transpose(1, 2).reshape(b * frames, sample.shape[1], height, width)
        timesteps = torch.as_tensor(timestep, device=x.device).reshape(-1).expand(b).repeat_interleave(frames)
        emb = spatial.time_embedding(spatial.get_time_embed(x, timesteps))
        context = encoder_hidden_states.repeat_interleave(frames, dim=0)

        x = spatial.conv_in(x)
        if face_features is not None:
            if face_features.ndim == 4:
                face_features = face_features.unsqueeze(2).expand(-1, -1, frames, -1, -1)
            x = x + face_features.transpose(1, 2).reshape(x.shape)

        audio = audio_tokens.flatten(0, 1) if audio_tokens is not None else None
        masks = _per_frame_masks(region_masks, b, frames) if audio is not None else None
        layer = partial(
            self._layer,
            emb=emb,
            context=context,
            frames=frames,
            reference={"reference": reference, "reference_rows": reference_rows},
            motion_frames=motion_frames if temporal else None,
            audio=audio,
            masks=masks,
            audio_weights=tuple(audio_weights),
            temporal=temporal,
            plain_block_motion=plain_block_motion,
        )
        n_blocks = len(spatial.down_blocks)
        down, mid, up = self.levels[:n_blocks], self.levels[n_blocks], self.levels[n_blocks + 1 :]

        skips = [x]
        for level, block in zip(down, spatial.down_blocks):
            for j, resnet in enumerate(block.resnets):
                x = layer(level, j, resnet, block, x)
                skips.append(x)
            for downsampler in block.downsamplers or []:
                x = downsampler(x)
                skips.append(x)

        x = layer(mid, 0, spatial.mid_block.resnets[0], spatial.mid_block, x)
        x = self._run(spatial.mid_block.resnets[1], x, emb)

        for level, block in zip(up, spatial.up_blocks):
            for j, resnet in enumerate(block.resnets):
                x = layer(level, j, resnet, block, torch.cat([x, skips.pop()], dim=1))
            for upsampler in block.upsamplers or []:
                x = upsampler(x)

        if spatial.conv_norm_out is not None:
            x = spatial.conv_act(spatial.conv_norm_out(x))
        x = spatial.conv_out(x)
        return x.reshape(b, frames, *x.shape[1:]).transpose(1, 2)

    def _layer(
        self,
        level: Level,
        j: int,
        resnet: nn.Module,
        block: nn.Module,
        x: torch.Tensor,
        *,
        emb: torch.Tensor,
        context: torch.Tensor,
        frames: int,
        reference: dict[str, Any],
        motion_frames: dict[str, torch.Tensor] | None,
        audio: torch.Tensor | None,
        masks: "_MaskPyramid | None",
        audio_weights: tuple[float, ...],
        temporal: bool,
        plain_block_motion: bool,
    ) -> torch.Tensor:
        """resnet -> spatial transformer -> audio module -> motion module, for layer j of a block."""
        x = self._run(resnet, x, emb)
        attentions = getattr(block, "attentions", None)
        if attentions is not None:
            # Transformer2DModel checkpoints its own transformer blocks when checkpointing is on.
            x = attentions[j](
                x, encoder_hidden_states=context, cross_attention_kwargs=reference, return_dict=False
            )[0]
        audio_module = self.audio_modules.get(level, j)
        if audio_module is not None and audio is not None and masks is not None:
            x = self._run(partial(audio_module, weights=audio_weights), x, audio, masks.at(x.shape[-2:]))
        if temporal and (attentions is not None or plain_block_motion):
            motion = None
            if motion_frames is not None and attention_name(level, j) in motion_frames:
                motion = _tokens_to_maps(motion_frames[attention_name(level, j)], x.shape[-2:])
            x = self._run(partial(run_motion_module, self.motion_modules.get(level, j)), x, frames, motion)
        return x


def _tokens_to_maps(tokens: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """(b, m, h*w, c) transformer tokens -> (b, m, c, h, w) feature maps."""
    b, m, _, c = tokens.shape
    return tokens.reshape(b, m, size[0], size[1], c).permute(0, 1, 4, 2, 3)


class _MaskPyramid:
    """Region masks flattened to (b*f, 3, h*w) per resolution: given ones as they are, others resized once."""

    def __init__(self, masks: list[torch.Tensor]) -> None:
        self.masks = masks[0]
        self.cache = {(int(m.shape[-2]), int(m.shape[-1])): m.flatten(2) for m in masks}

    def at(self, size: torch.Size) -> torch.Tensor:
        key = (int(size[0]), int(size[1]))
        if key not in self.cache:
            resized = F.interpolate(self.masks, size=key, mode="bilinear", antialias=True, align_corners=False)
            self.cache[key] = resized.flatten(2)
        return self.cache[key]


def _per_frame_masks(region_masks: RegionMasks | None, b: int, frames: int) -> _MaskPyramid:
    if region_masks is None:
        raise ValueError("audio_tokens need region_masks (b, 3, H, W) or (b, f, 3, H, W), or a list of them")
    pyramid = [region_masks] if isinstance(region_masks, torch.Tensor) else list(region_masks)
    flat = []
    for masks in pyramid:
        if masks.ndim == 4:
            masks = masks.unsqueeze(1).expand(-1, frames, -1, -1, -1)
        flat.append(masks.reshape(b * frames, *masks.shape[2:]).float())
    return _MaskPyramid(flat)
