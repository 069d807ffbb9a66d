"""HalloNet: the five trainable modules wired together, used by both training and generation.

    ReferenceNet(reference latent + motion-frame latents, t=0, face tokens) -> reference + motion features
    DenoisingUNet3D(noisy clip, t, face tokens, reference attention, motion frames,
                    face-locator features, audio tokens, region masks) -> v-prediction

`Drop` is the single definition of a missing condition: classifier-free guidance's unconditional
branch is `unconditional(behaviour)`, and training's condition dropout draws the same flags.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from model.behaviour import ModelBehaviour
from model.face_locator import FaceLocator
from model.presets import Preset
from model.projections import AudioProj, ImageProj
from model.reference_attention import install_reference_processors
from model.unet3d import DenoisingUNet3D

COMPONENTS = ("reference_unet", "denoising_unet", "face_locator", "image_proj", "audio_proj")
COMPONENT_CLASSES = {
    "reference_unet": UNet2DConditionModel,
    "denoising_unet": DenoisingUNet3D,
    "face_locator": FaceLocator,
    "image_proj": ImageProj,
    "audio_proj": AudioProj,
}


@dataclass
class HalloModules:
    reference_unet: UNet2DConditionModel
    denoising_unet: DenoisingUNet3D
    face_locator: FaceLocator
    image_proj: ImageProj
    audio_proj: AudioProj


def build_hallo_modules(preset: Preset, reference_unet: UNet2DConditionModel | None = None) -> HalloModules:
    """Fresh modules at the preset's sizes; pass a (pretrained) 2D UNet to copy into both UNets."""
    token_dim = int(preset.unet["cross_attention_dim"])
    if reference_unet is None:
        reference_unet = UNet2DConditionModel(**preset.unet)
    extras = {"audio_dim": token_dim, "motion_heads": preset.motion_heads, "motion_max_len": preset.motion_max_len}
    return HalloModules(
        reference_unet=reference_unet,
        denoising_unet=DenoisingUNet3D.from_unet2d(reference_unet, **extras),
        face_locator=FaceLocator(3, tuple(preset.face_locator_channels), int(preset.unet["block_out_channels"][0])),
        image_proj=ImageProj(preset.face_embed_dim, preset.image_tokens, token_dim),
        audio_proj=AudioProj(
            preset.audio_window, preset.audio_layers, preset.audio_dim, preset.audio_hidden, preset.audio_tokens, token_dim
        ),
    )


@dataclass(frozen=True)
class Drop:
    """Conditions replaced by their null value (CFG's unconditional branch, training dropout)."""

    reference: bool = False  # no reference attention; motion frames are kept (temporal continuity)
    identity: bool = False  # zero face embedding: ImageProj(0) tokens, also in the ReferenceNet pass
    face_region: bool = False  # no face-locator features
    audio: bool = False  # zero audio tokens


UNCONDITIONAL = Drop(reference=True, identity=True, face_region=True, audio=True)  # every condition missing


def unconditional(behaviour: ModelBehaviour) -> Drop:
    """Guidance's unconditional branch: every condition missing, except the face-locator features when the
    weights never trained without them (behaviour.uncond_face_region = keep)."""
    return dataclasses.replace(UNCONDITIONAL, face_region=behaviour.uncond_face_region == "drop")


@dataclass
class Conditions:
    """Everything a clip is conditioned on, computed once and reused at every denoising step."""

    reference: dict[str, torch.Tensor] | None  # transformer-block path -> (b, tokens, c); None = no reference attention
    motion: dict[str, torch.Tensor]  # attention path -> (b, m, tokens, c): motion-frame features
    face_tokens: torch.Tensor  # (b, n, d)
    face_features: torch.Tensor | None  # (b, c0, h, w)
    audio_tokens: torch.Tensor | None  # (b, f, n, d)
    region_masks: torch.Tensor | None  # (b, 3, H, W) or (b, f, 3, H, W): pose, face, lip


class HalloNet(nn.Module):
    def __init__(self, modules: HalloModules, behaviour: ModelBehaviour | None = None) -> None:
        super().__init__()
        self.reference_unet = modules.reference_unet
        self.denoising_unet = modules.denoising_unet
        self.face_locator = modules.face_locator
        self.image_proj = modules.image_proj
        self.audio_proj = modules.audio_proj
        self.behaviour = behaviour if behaviour is not None else ModelBehaviour()
        install_reference_processors(self.reference_unet, "write")

    def parts(self) -> HalloModules:
        return HalloModules(**{name: getattr(self, name) for name in COMPONENTS})

    def reference_features(
        self, ref_latents: torch.Tensor, motion_latents: torch.Tensor | None, face_tokens: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """One ReferenceNet pass at t=0 over the reference and the motion frames.

        ref_latents (b, c, h, w); motion_latents (b, m, c, h, w) or None. Returns the reference-attention
        features (block path -> (b, tokens, c)) and the motion-frame features (attention path -> (b, m, tokens, c)).
        """
        b = ref_latents.shape[0]
        images = ref_latents.unsqueeze(1)
        if motion_latents is not None:
            images = torch.cat([images, motion_latents.to(ref_latents.dtype)], dim=1)
        per_sample = images.shape[1]
        bank: dict[str, torch.Tensor] = {}
        self.reference_unet(
            images.flatten(0, 1),
            0,
            encoder_hidden_states=face_tokens.repeat_interleave(per_sample, dim=0),
            cross_attention_kwargs={"reference": bank},
        )
        spatial, motion = {}, {}
        for block, tokens in bank.items():
            tokens = tokens.reshape(b, per_sample, *tokens.shape[1:])
            spatial[block] = tokens[:, 0]
            if per_sample > 1:
                motion[block.rsplit(".transformer_blocks.", 1)[0]] = tokens[:, 1:]
        return spatial, motion

    def encode(
        self,
        ref_latents: torch.Tensor,
        motion_latents: torch.Tensor | None,
        face_embedding: torch.Tensor,
        face_mask: torch.Tensor,
        audio_windows: torch.Tensor | None = None,
        region_masks: torch.Tensor | None = None,
        drop: Drop = Drop(),
    ) -> Conditions:
        """face_embedding (b, 512); face_mask (b, 3, H, W) pixels in [0, 1]; audio_windows (b, f, 5, layers, dim).

        `drop` replaces conditions by their null value here, so training dropout and the CFG branch agree.
        """
        if drop.identity:
            face_embedding = torch.zeros_like(face_embedding)
        face_tokens = self.image_proj(face_embedding)
        reference, motion = self.reference_features(ref_latents, motion_latents, face_tokens)
        audio_tokens = self.audio_proj(audio_windows) if audio_windows is not None else None
        if audio_tokens is not None and drop.audio:
            audio_tokens = torch.zeros_like(audio_tokens)
        return Conditions(
            reference=None if drop.reference else reference,
            motion=motion,
            face_tokens=face_tokens,
            face_features=None if drop.face_region else self.face_locator(face_mask.to(face_tokens.dtype)),
            audio_tokens=audio_tokens,
            region_masks=region_masks,
        )

    def denoise(
        self,
        noisy: torch.Tensor,
        timesteps: torch.Tensor | int,
        cond: Conditions,
        audio_weights: Sequence[float] = (1.0, 1.0, 1.0),
        temporal: bool = True,
    ) -> torch.Tensor:
        """noisy (b, c, f, h, w) -> model output (v-prediction) of the same shape."""
        return self.denoising_unet(
            noisy,
            timesteps,
            cond.face_tokens,
            reference=cond.reference,
            motion_frames=cond.motion,
            face_features=cond.face_features,
            audio_tokens=cond.audio_tokens,
            region_masks=cond.region_masks,
            audio_weights=audio_weights,
            temporal=temporal,
        )

    def forward(
        self,
        noisy: torch.Tensor,
        timesteps: torch.Tensor | int,
        ref_latents: torch.Tensor,
        motion_latents: torch.Tensor | None,
        face_embedding: torch.Tensor,
        face_mask: torch.Tensor,
        audio_windows: torch.Tensor | None = None,
        region_masks: torch.Tensor | None = None,
        drop: Drop = Drop(),
        temporal: bool = True,
    ) -> torch.Tensor:
        """One training step's prediction: encode the conditions, then denoise."""
        cond = self.encode(ref_latents, motion_latents, face_embedding, face_mask, audio_windows, region_masks, drop)
        return self.denoise(noisy, timesteps, cond, temporal=temporal)
