"""The module DeepSpeed wraps in both stages: encode with the frozen VAE, noise, predict v, weigh the loss.

Stage 1 trains on single frames (temporal layers off); stage 2 on 14-frame clips with the motion
frames and the audio. The frozen VAE is deliberately not a registered submodule, so it stays out
of the optimizer, of ZeRO partitioning and of the checkpoints.

A batch carries either uint8 pixels (`reference`, `motion_frames`, `frames`), converted and
encoded here, or latents from the cache (training/latent_cache/read.py: `reference_latents`,
`motion_latents`, `target_mean`, `target_std`), which skip the VAE; the noise draws are the same.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torch import nn

from model.net import Drop, HalloNet, unconditional
from model.scheduler import make_scheduler
from training.config import DiffusionConfig
from training.diffusion import min_snr_weights, sample_noise, v_loss
from training.frames import to_unit_range
from training.latent_cache.read import sample_latents


def set_trainable(net: HalloNet, trainable: list[nn.Module]) -> None:
    net.requires_grad_(False)
    for module in trainable:
        module.requires_grad_(True)


def enable_checkpointing(net: HalloNet) -> None:
    net.reference_unet.enable_gradient_checkpointing()
    net.denoising_unet.enable_gradient_checkpointing()


class HalloTrainStep(nn.Module):
    def __init__(self, net: HalloNet, vae: AutoencoderKL, cfg: DiffusionConfig, temporal: bool) -> None:
        super().__init__()
        self.net = net
        self.__dict__["vae"] = vae.requires_grad_(False).eval()  # unregistered on purpose (see docstring)
        self.scheduler = make_scheduler()
        self.cfg = cfg
        self.temporal = temporal

    @property
    def dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, 3, H, W) in [-1, 1] -> scaled latents (n, 4, H/8, W/8); sampled when a generator is given."""
        vae = self.vae
        dist = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist
        latents = dist.sample(generator=generator) if generator is not None else dist.mode()
        return (latents * vae.config.scaling_factor).to(self.dtype)

    def cached(self, mean: torch.Tensor, std: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Cached (n, 4, h, w) latent parameters -> scaled latents, as `encode` returns them."""
        vae = self.vae
        latents = sample_latents(mean.to(vae.device, vae.dtype), None if std is None else std.to(vae.device, vae.dtype),
                                 generator)
        return (latents * vae.config.scaling_factor).to(self.dtype)

    def _draw(self, probability: float, generator: torch.Generator) -> bool:
        return probability > 0 and torch.rand((), generator=generator).item() < probability

    def _drop(self, generator: torch.Generator) -> Drop:
        """The conditions this batch goes without: all that guidance's unconditional branch drops, at once
        (so that branch is trained as generation runs it), else each on its own.

        Every rank draws and rank 0's draw holds for all: a dropped condition leaves its module out of
        the graph, and DeepSpeed reduces the gradients of the parameters each rank used in the order
        they came, so the ranks must run the same graph. No probability, no draw.
        """
        cfg = self.cfg
        odds = torch.tensor([cfg.drop_unconditional, cfg.drop_reference, cfg.drop_identity, cfg.drop_face_region,
                             cfg.drop_audio if self.temporal else 0.0])
        if not odds.any():
            return Drop()
        draw = torch.rand(len(odds), generator=generator)
        if dist.is_initialized() and dist.get_world_size() > 1:
            draw = draw.to(next(self.net.parameters()).device)
            dist.broadcast(draw, src=0)
        unconditional_batch, reference, identity, face_region, audio = (draw.cpu() < odds).tolist()
        if unconditional_batch:
            return unconditional(self.net.behaviour)
        return Drop(reference=reference, identity=identity, face_region=face_region, audio=audio)

    @torch.no_grad()
    def augment_motion(self, motion: torch.Tensor, face_mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Hallo2's long-video augmentations of the motion latents (b, m, c, h, w), each off at 0: noise at a
        small timestep of the training schedule (diffusion.motion_noise_timesteps), and dropped latent pixels,
        each one an 8x8-pixel patch, outside the face rectangle face_mask (b, 3, H, W) (diffusion.motion_patch_drop).

        Generation's motion frames are its own decoded frames, not the real ones training feeds: slightly
        wrong in colour and detail, and more so clip after clip. Both teach the motion modules to take
        them as a hint of the motion rather than as pixels to copy. Both act on the latents so that the
        pixel and the cached-latent paths augment alike; no augmentation, no draw.
        """
        cfg = self.cfg
        b, m = motion.shape[:2]
        if cfg.motion_noise_timesteps > 0:
            noise = torch.randn(motion.shape, generator=generator, dtype=torch.float32).to(motion.device, motion.dtype)
            t = torch.randint(0, cfg.motion_noise_timesteps, (b,), generator=generator)
            noisy = self.scheduler.add_noise(motion.flatten(0, 1), noise.flatten(0, 1), t.repeat_interleave(m))
            motion = noisy.unflatten(0, (b, m))
        if cfg.motion_patch_drop > 0:
            face = F.adaptive_max_pool2d(face_mask[:, :1].float(), motion.shape[-2:]).to(motion.device)  # (b, 1, h, w)
            drop = torch.rand((b, m, 1, *motion.shape[-2:]), generator=generator).to(motion.device) < cfg.motion_patch_drop
            motion = motion.masked_fill(drop & (face[:, None] < 0.5), 0)
        return motion

    def forward(self, batch: dict[str, Any], generator: torch.Generator) -> torch.Tensor:
        device, dtype = next(self.net.parameters()).device, self.dtype
        cast = {k: _on_device(v, device, dtype) for k, v in batch.items()}
        use_cache = "target_mean" in cast
        frames = cast["target_mean"] if use_cache else cast["frames"]  # (b, f, ...); f = 1 in stage 1
        b, f = frames.shape[:2]
        if use_cache:
            latents = self.cached(frames.flatten(0, 1), cast["target_std"].flatten(0, 1), generator)
        else:
            latents = self.encode(frames.flatten(0, 1), generator)
        latents = latents.unflatten(0, (b, f)).transpose(1, 2)  # (b, c, f, h, w)
        noise = sample_noise(latents.float().cpu(), self.cfg.noise_offset, generator).to(device, dtype)
        timesteps = torch.randint(0, self.scheduler.config.num_train_timesteps, (b,), generator=generator).to(device)
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        target = self.scheduler.get_velocity(latents, noise, timesteps)

        motion_latents = None
        if self.temporal:
            motion = cast["motion_latents" if use_cache else "motion_frames"]  # (b, m, ...)
            if self._draw(self.cfg.drop_motion, generator):
                # A clip with no past: generation's first clip uses the reference image as motion
                # frames, so training does too (the reference implementation zeroed them instead).
                motion = cast["reference_latents" if use_cache else "reference"][:, None].expand_as(motion)
            encode = self.cached if use_cache else self.encode
            motion_latents = encode(motion.flatten(0, 1)).unflatten(0, motion.shape[:2])
            motion_latents = self.augment_motion(motion_latents, cast["face_mask"], generator)
        reference = self.cached(cast["reference_latents"]) if use_cache else self.encode(cast["reference"])
        prediction = self.net(
            noisy, timesteps, reference, motion_latents, cast["face_embedding"],
            cast["face_mask"], cast.get("audio_windows"), cast.get("region_masks"), drop=self._drop(generator),
            temporal=self.temporal,
        )
        weights = min_snr_weights(self.scheduler, timesteps.cpu(), self.cfg.snr_gamma).to(device)
        return v_loss(prediction, target, weights)


def _on_device(value: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """Tensors onto the step's device in its dtype; uint8 frames become [-1, 1] floats there."""
    if not torch.is_tensor(value):
        return value
    if value.dtype == torch.uint8:
        return to_unit_range(value.to(device), dtype)
    return value.to(device, dtype) if value.is_floating_point() else value
