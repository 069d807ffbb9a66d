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

from model.weights_behaviour import ModelBehaviour
from model.face_locator import FaceLocator
from model.presets import Preset
from model.projections import AudioProj, ImageProj
from model.reference_attention import install_reference_processors
from model.reference_unet import ReferenceUNet
from model.unet3d import DenoisingUNet3D, RegionMasks

COMPONENTS = ("reference_unet", "denoising_unet", "face_locator", "image_proj", "audio_proj")
COMPONENT_CLASSES = {
    "reference_unet": ReferenceUNet,
    "denoising_unet": DenoisingUNet3D,
    "face_locator": FaceLocator,
    "image_proj": ImageProj,
    "audio_proj": AudioProj,
}


@dataclass
class HalloModules:
    reference_unet: ReferenceUNet
    denoising_unet: DenoisingUNet3D
    face_locator: FaceLocator
    image_proj: ImageProj
    audio_proj: AudioProj


def build_hallo_modules(preset: Preset, unet: UNet2DConditionModel | None = None) -> HalloModules:
    """Fresh modules at the preset's sizes; pass a (pretrained) SD UNet to copy into both UNets."""
    token_dim = int(preset.unet["cross_attention_dim"])
    extras = {
        "audio_dim": preset.audio_token_dim or token_dim,
        "motion_heads": preset.motion_heads,
        "motion_max_len": preset.motion_max_len,
    }
    if unet is None:
        denoising_unet = DenoisingUNet3D(unet=dict(preset.unet), **extras)
        unet = denoising_unet.spatial
    else:
        denoising_unet = DenoisingUNet3D.from_unet2d(unet, **extras)
    return HalloModules(
        reference_unet=ReferenceUNet.from_unet(unet),
        denoising_unet=denoising_unet,
        face_locator=FaceLocator(3, tuple(preset.face_locator_channels), int(preset.unet["block_out_channels"][0])),
        image_proj=ImageProj(preset.face_embed_dim, preset.image_tokens, token_dim),
        audio_proj=AudioProj(
            preset.audio_window, preset.audio_layers, preset.audio_dim, preset.audio_hidden, preset.audio_tokens,
            preset.audio_token_dim or token_dim,
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

    reference: dict[str, torch.Tensor] | None  # block path -> (b, tokens, c) or per frame (b, f, tokens, c); None = none
    motion: dict[str, torch.Tensor]  # attention path -> (b, m, tokens, c): motion-frame features
    face_tokens: torch.Tensor  # (b, n, d)
    face_features: torch.Tensor | None  # (b, c0, h, w)
    audio_tokens: torch.Tensor | None  # (b, f, n, d)
    region_masks: RegionMasks | None  # pose, face, lip masks (see model.unet3d.RegionMasks)
    reference_rows: torch.Tensor | None = None  # (b,) bool: the rows that attend to `reference`; None = all


def batch_conditions(uncond: Conditions, cond: Conditions) -> Conditions:
    """Guidance's two branches as one batch [uncond | cond], so one denoiser pass predicts both.

    A missing condition becomes its null value where that is exact: zero face-locator features (added
    after conv_in, so zero adds nothing), zero audio tokens; a branch without reference attention gets
    placeholder features that `reference_rows` masks out of its attention (the softmax gives them weight
    0, the same output as not attending to them, to float rounding).
    """
    def pair(u: torch.Tensor | None, c: torch.Tensor | None) -> torch.Tensor | None:
        if u is None and c is None:
            return None
        u = torch.zeros_like(c) if u is None else u
        c = torch.zeros_like(u) if c is None else c
        if u.ndim != c.ndim:  # one reference per clip beside one per frame (hallo_tiled): per frame for both
            frames = (u if u.ndim == 4 else c).shape[1]
            u, c = (x if x.ndim == 4 else x.unsqueeze(1).expand(-1, frames, -1, -1) for x in (u, c))
        return torch.cat([u, c])

    reference = None
    if uncond.reference is not None or cond.reference is not None:
        keys = (cond.reference or uncond.reference).keys()
        reference = {k: pair((uncond.reference or {}).get(k), (cond.reference or {}).get(k)) for k in keys}
    masks = None
    if cond.region_masks is not None:
        masks = (torch.cat([uncond.region_masks, cond.region_masks]) if isinstance(cond.region_masks, torch.Tensor)
                 else [torch.cat(p) for p in zip(uncond.region_masks, cond.region_masks)])
    rows = torch.tensor([uncond.reference is not None, cond.reference is not None], device=cond.face_tokens.device)
    rows = rows.repeat_interleave(cond.face_tokens.shape[0])
    return Conditions(
        reference=reference,
        motion={k: torch.cat([uncond.motion[k], v]) for k, v in cond.motion.items()},
        face_tokens=torch.cat([uncond.face_tokens, cond.face_tokens]),
        face_features=pair(uncond.face_features, cond.face_features),
        audio_tokens=pair(uncond.audio_tokens, cond.audio_tokens),
        region_masks=masks,
        reference_rows=None if reference is None or bool(rows.all()) else rows,
    )


@dataclass
class VideoConditions:
    """What conditions every clip of one video alike: computed once (HalloNet.encode_video), read by
    HalloNet.encode_clip for each clip."""

    tokens: torch.Tensor  # (b, k, n, d): the face tokens of the branches, [null, cond] under guidance, [cond] without
    reference: dict[str, torch.Tensor]  # block path -> (b, k, tokens, c): the reference image's features per token set
    face_features: torch.Tensor  # (b, c0, h, w)
    null: Drop | None  # guidance's unconditional branch; None: no guidance


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

    def reference_bank(self, images: torch.Tensor, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """One ReferenceNet pass at t=0: images (b, s, c, h, w) with face tokens (b, s, n, d) per image.

        Returns transformer-block path -> (b, s, h*w, c): the input of its spatial self-attention,
        rounded through float16 when behaviour.reference_bank_dtype says so.
        """
        b, s = images.shape[:2]
        bank: dict[str, torch.Tensor] = {}
        self.reference_unet(
            images.flatten(0, 1), 0, encoder_hidden_states=tokens.flatten(0, 1), cross_attention_kwargs={"reference": bank}
        )
        rounded = self.behaviour.reference_bank_dtype == "float16"
        return {
            block: (feats.to(torch.float16).to(feats.dtype) if rounded else feats).reshape(b, s, *feats.shape[1:])
            for block, feats in bank.items()
        }

    @staticmethod
    def split_bank(bank: dict[str, torch.Tensor], rows: slice) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The reference-attention features (row `rows.start`: the reference image) and the motion-frame
        features (the rows after it) of one set of bank rows: block path -> (b, tokens, c), and
        attention path -> (b, m, tokens, c)."""
        spatial, motion = {}, {}
        for block, feats in bank.items():
            feats = feats[:, rows]
            spatial[block] = feats[:, 0]
            if feats.shape[1] > 1:
                motion[block.rsplit(".transformer_blocks.", 1)[0]] = feats[:, 1:]
        return spatial, motion

    @staticmethod
    def _images(ref_latents: torch.Tensor, motion_latents: torch.Tensor | None) -> torch.Tensor:
        """(b, 1 + m, c, h, w): the reference latent followed by the motion-frame latents."""
        images = ref_latents.unsqueeze(1)
        if motion_latents is not None:
            images = torch.cat([images, motion_latents.to(ref_latents.dtype)], dim=1)
        return images

    def _face_tokens(self, face_embedding: torch.Tensor, drop: Drop) -> torch.Tensor:
        return self.image_proj(torch.zeros_like(face_embedding) if drop.identity else face_embedding)

    @staticmethod
    def _conditions(
        bank: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]],
        face_tokens: torch.Tensor,
        face_features: torch.Tensor,
        audio_tokens: torch.Tensor | None,
        region_masks: RegionMasks | None,
        drop: Drop,
    ) -> Conditions:
        reference, motion = bank
        if audio_tokens is not None and drop.audio:
            audio_tokens = torch.zeros_like(audio_tokens)
        return Conditions(
            reference=None if drop.reference else reference,
            motion=motion,
            face_tokens=face_tokens,
            face_features=None if drop.face_region else face_features,
            audio_tokens=audio_tokens,
            region_masks=region_masks,
        )

    def encode(
        self,
        ref_latents: torch.Tensor,
        motion_latents: torch.Tensor | None,
        face_embedding: torch.Tensor,
        face_mask: torch.Tensor,
        audio_windows: torch.Tensor | None = None,
        region_masks: RegionMasks | None = None,
        drop: Drop = Drop(),
    ) -> Conditions:
        """ref_latents (b, c, h, w); motion_latents (b, m, c, h, w) or None; face_embedding (b, 512);
        face_mask (b, 3, H, W) pixels in [0, 1]; audio_windows (b, f, 5, layers, dim).

        `drop` replaces conditions by their null value here, so training dropout and the CFG branch agree.
        """
        face_tokens = self._face_tokens(face_embedding, drop)
        images = self._images(ref_latents, motion_latents)
        bank = self.reference_bank(images, face_tokens.unsqueeze(1).expand(-1, images.shape[1], -1, -1))
        return self._conditions(
            self.split_bank(bank, slice(None)),
            face_tokens,
            self.face_locator(face_mask.to(face_tokens.dtype)),
            self.audio_proj(audio_windows) if audio_windows is not None else None,
            region_masks,
            drop,
        )

    def encode_guided(
        self,
        ref_latents: torch.Tensor,
        motion_latents: torch.Tensor | None,
        face_embedding: torch.Tensor,
        face_mask: torch.Tensor,
        audio_windows: torch.Tensor | None = None,
        region_masks: RegionMasks | None = None,
        null: Drop | None = None,
        *,
        frames: int,
    ) -> tuple[Conditions, Conditions]:
        """Classifier-free guidance's (unconditional, conditional) pair: `encode` with `null` and without
        (default: `unconditional(self.behaviour)`, the branch these weights were trained for).

        The ReferenceNet runs the reference and motion frames once per branch, [null | cond].
        behaviour.reference_token_pairing `per_branch` gives each image its own branch's face tokens (the
        same numbers as two `encode` calls). `hallo_tiled` reproduces how Hallo's batch of two tiles:
        the token sets alternate over the 2(1+m) images ([ref.u, m1.c, m2.u | ref.c, m1.u, m2.c] for
        m = 2), and the two halves' reference features alternate over the 2 x `frames` denoised frames,
        so frame k of the conditional branch reads half (frames + k) mod 2 (Hallo computes one video).
        """
        video = self.encode_video(ref_latents, face_embedding, face_mask, guided=True, null=null)
        uncond, cond = self.encode_clip(video, motion_latents, audio_windows, region_masks, frames=frames)
        assert uncond is not None
        return uncond, cond

    def encode_video(
        self,
        ref_latents: torch.Tensor,
        face_embedding: torch.Tensor,
        face_mask: torch.Tensor,
        guided: bool = True,
        null: Drop | None = None,
    ) -> VideoConditions:
        """The conditions every clip shares, once per video: the face tokens of each branch, the reference
        image's ReferenceNet features with each token set, the face-locator features."""
        null = (unconditional(self.behaviour) if null is None else null) if guided else None
        tokens = torch.stack([self._face_tokens(face_embedding, d) for d in ([null] if null else []) + [Drop()]], dim=1)
        images = ref_latents.unsqueeze(1).expand(-1, tokens.shape[1], -1, -1, -1)
        return VideoConditions(tokens, self.reference_bank(images, tokens), self.face_locator(face_mask.to(tokens.dtype)),
                               null)

    def encode_clip(
        self,
        video: VideoConditions,
        motion_latents: torch.Tensor | None,
        audio_windows: torch.Tensor | None = None,
        region_masks: RegionMasks | None = None,
        *,
        frames: int,
    ) -> tuple[Conditions | None, Conditions]:
        """One clip's (unconditional or None, conditional) conditions: `video`'s plus the ReferenceNet pass
        over this clip's motion frames (once per branch) and its audio tokens. Image row r of the
        [null | cond] halves (1 + m rows each, the reference first) reads token set r mod 2 under
        hallo_tiled, its own half's otherwise: see encode_guided."""
        halves = video.tokens.shape[1]
        m = 0 if motion_latents is None else motion_latents.shape[1]
        s = 1 + m
        tiled = self.behaviour.reference_token_pairing == "hallo_tiled" and video.null is not None
        token_of = [r % 2 if tiled else r // s for r in range(halves * s)]
        motion_bank: dict[str, torch.Tensor] = {}
        if m:
            rows = [r for r in range(halves * s) if r % s]
            images = motion_latents.to(video.tokens.dtype).repeat(1, halves, 1, 1, 1)
            motion_bank = self.reference_bank(images, video.tokens[:, [token_of[r] for r in rows]])
        branches = []
        for h in range(halves):
            spatial = {block: feats[:, token_of[h * s]] for block, feats in video.reference.items()}
            motion = {block.rsplit(".transformer_blocks.", 1)[0]: feats[:, h * m:(h + 1) * m]
                      for block, feats in motion_bank.items()}
            branches.append((spatial, motion))
        if tiled:
            (null_spatial, _), (cond_spatial, cond_motion) = branches
            half = (frames + torch.arange(frames, device=video.tokens.device)) % 2
            branches[1] = ({k: torch.stack([null_spatial[k], v], dim=1)[:, half] for k, v in cond_spatial.items()},
                           cond_motion)
        audio_tokens = self.audio_proj(audio_windows) if audio_windows is not None else None
        cond = self._conditions(branches[-1], video.tokens[:, -1], video.face_features, audio_tokens, region_masks, Drop())
        if video.null is None:
            return None, cond
        return self._conditions(branches[0], video.tokens[:, 0], video.face_features, audio_tokens, region_masks,
                                video.null), cond

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
            reference_rows=cond.reference_rows,
            audio_weights=audio_weights,
            temporal=temporal,
            plain_block_motion=self.behaviour.motion_in_plain_blocks,
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
