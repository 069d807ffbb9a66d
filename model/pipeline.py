"""Clip-by-clip sampling with classifier-free guidance, the last generated frames carried on.

Once per video:
  reference      = the reference image's VAE latent, its ReferenceNet features with each branch's face
                   tokens, the face tokens and the face-locator features (HalloNet.encode_video);
  plan           = the sampler's timesteps and which of them are guided, decided on the host before
                   any denoising, so the step loop never waits for the device (no .item() per step).
For every clip of `clip_frames` frames:
  motion frames  = the reference image repeated (first clip; training must use the same) or the
                   last `motion_frames` decoded frames of the previous clip, VAE-encoded again;
  conditions     = HalloNet.encode_clip(...): the ReferenceNet over the motion frames and the clip's audio
                   tokens, with CFG for both branches: the conditional one and the `unconditional(behaviour)`
                   one (no reference attention, ImageProj(0), zero audio tokens, and no face-locator
                   features unless the weights never trained without them), paired as the weights' behaviour says;
  guidance       = on the steps at or above `guidance_min_timestep` only (default: the sampling preset's, which
                   is the weights' behaviour but for `hallo`: 600 of 1000): the noisy steps decide the
                   mouth's opening and the pose, while guiding the nearly clean ones only pushes detail past
                   the conditional prediction. Both branches run as one batch of two (`batched_guidance`;
                   two passes after a CUDA out-of-memory error, or when switched off);
  temporal       = the motion and audio modules run only when the weights trained them
                   (behaviour.temporal; a stage-1 export generates frame by frame from the reference);
  denoise        = `steps` steps of `sampler` (model.scheduler.make_sampler; beta schedule: the weights'
                   behaviour) from noise drawn from one seeded CPU generator, so the same seed gives the
                   same video on any device;
  decode         = VAE decode; the video is trimmed to the audio's frame count at the end.

Long audio: `stream` yields the video clip by clip (model.generate hands each to the video encoder as
it comes), so memory stays flat however long the audio; only the audio features are held whole (about
40 KB a frame for wav2vec2-base), on the CPU, each clip's windows moved to the device. The last clip
is generated whole, its audio windows clamped to the last feature row past the audio's end, and cut
to the frames the audio covers: the video lasts as long as the audio, to the frame.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
import torch
from diffusers import AutoencoderKL

from model.net import Conditions, HalloNet, batch_conditions
from model.progress import clip_progress
from model.projections import audio_windows
from model.scheduler import Sampler, make_sampler

VAE_CHUNK = 8  # frames per VAE decode call (memory)

log = logging.getLogger(__name__)


@dataclass
class Reference:
    image: torch.Tensor  # (3, H, W) in [-1, 1]
    face_region: torch.Tensor  # (H, W) in {0, 1}
    regions: torch.Tensor  # (3, h, w): pose, face, lip
    embedding: torch.Tensor  # (512,)


@dataclass
class SamplerSettings:
    clip_frames: int = 16
    motion_frames: int = 2
    steps: int = 40
    sampler: Sampler = "ddim"
    guidance_scale: float = 3.5
    guidance_min_timestep: int | None = None  # guide only the steps at or above this timestep; None = the weights'
    # behaviour (resolved here only, in `plan`)
    batched_guidance: bool = True  # both guidance branches in one batch of two (two passes when False)
    audio_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # pose, face, lip
    seed: int = 42
    frames: Optional[int] = None  # video frames to produce; None = one per audio feature row (fewer when the features were padded)


@dataclass(frozen=True)
class SamplingPlan:
    """The denoising of every clip, decided before it runs: the sampler's timesteps and the guided ones."""

    sampler: Sampler
    timesteps: tuple[int, ...]
    guided: tuple[bool, ...]
    guidance_scale: float
    guidance_min_timestep: int

    @property
    def passes(self) -> int:
        """Denoiser predictions per clip: one per step, two on a guided step (batched or not)."""
        return len(self.timesteps) + sum(self.guided)

    def describe(self, clips: int, frames: int) -> dict:
        """What ran, for the log and the output's sidecar."""
        guided = [t for t, g in zip(self.timesteps, self.guided) if g]
        return {"sampler": self.sampler, "steps": len(self.timesteps), "guidance_scale": self.guidance_scale,
                "guided_steps": len(guided), "guided_from_timestep": min(guided) if guided else None,
                "passes_per_clip": self.passes, "clips": clips, "passes": self.passes * clips,
                "passes_per_frame": self.passes * clips / max(frames, 1)}


class HalloPipeline:
    def __init__(self, net: HalloNet, vae: AutoencoderKL, device: torch.device) -> None:
        """net and vae already in the dtype to run in (load them with it: see model.weights)."""
        self.net = net.to(device).eval()
        self.vae = vae.to(device).eval()
        self.device, self.dtype = device, next(net.parameters()).dtype
        self.scale = float(vae.config.scaling_factor)
        self.batched_guidance = True  # cleared for the rest of the run by a CUDA out-of-memory error

    def plan(self, settings: SamplerSettings) -> SamplingPlan:
        sampler = make_sampler(settings.sampler, self.net.behaviour.sampling_beta_schedule)
        sampler.set_timesteps(settings.steps)
        timesteps = tuple(int(t) for t in sampler.timesteps)
        behaviour = self.net.behaviour
        floor = behaviour.guidance_min_timestep if settings.guidance_min_timestep is None else settings.guidance_min_timestep
        guided = tuple(settings.guidance_scale != 1.0 and t >= floor for t in timesteps)
        return SamplingPlan(settings.sampler, timesteps, guided, settings.guidance_scale, floor)

    def _encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(pixels.to(self.device, self.dtype)).latent_dist.mean * self.scale

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(1, c, f, h, w) latents -> (f, 3, H, W) pixels in [-1, 1]."""
        frames = latents[0].transpose(0, 1) / self.scale
        return torch.cat([self.vae.decode(chunk).sample for chunk in frames.split(VAE_CHUNK)]).clamp(-1, 1)

    def __call__(self, ref: Reference, audio_features: torch.Tensor, settings: SamplerSettings, progress: bool = True) -> np.ndarray:
        """audio_features (T, layers, dim) at the video rate -> T frames, (T, H, W, 3) uint8 RGB."""
        return np.concatenate(list(self.stream(ref, audio_features, settings, progress)))

    @torch.no_grad()
    def stream(self, ref: Reference, audio_features: torch.Tensor, settings: SamplerSettings,
               progress: bool = True) -> Iterator[np.ndarray]:
        """The frames of __call__, clip by clip: (n, H, W, 3) uint8 RGB, n = clip_frames but for the last."""
        total = audio_features.shape[0] if settings.frames is None else settings.frames
        f, m = settings.clip_frames, settings.motion_frames
        net, plan = self.net, self.plan(settings)
        temporal = net.behaviour.temporal
        generator = torch.Generator("cpu").manual_seed(settings.seed)
        window = int(net.audio_proj.config.window)
        image = ref.image[None].to(self.device, self.dtype)
        ref_latents = self._encode(image)
        face_mask = ref.face_region[None, None].expand(1, 3, -1, -1).to(self.device, self.dtype)
        video = net.encode_video(ref_latents, ref.embedding[None].to(self.device, self.dtype), face_mask,
                                 guided=any(plan.guided))
        region_masks = ref.regions[None].to(self.device, self.dtype)
        previous = None  # the last m decoded frames of the previous clip
        for clip in clip_progress(math.ceil(total / f), progress):
            motion = None
            if m and temporal:  # the first clip's motion frames are the reference repeated: its latents, as encoded
                motion = ref_latents[:, None].repeat(1, m, 1, 1, 1) if previous is None else self._encode(previous)[None]
            windows = audio_windows(audio_features, clip * f, f, window)[None].to(self.device, self.dtype) if temporal else None
            uncond, cond = net.encode_clip(video, motion, windows, region_masks, frames=f)
            shape = (1, ref_latents.shape[1], f, *ref_latents.shape[2:])
            latents = self._denoise(plan, torch.randn(shape, generator=generator), uncond, cond, settings)
            pixels = self._decode(latents)
            previous = pixels[pixels.shape[0] - m :]
            yield ((pixels[: total - clip * f].float().permute(0, 2, 3, 1) + 1) * 127.5).round().byte().cpu().numpy()

    def _denoise(self, plan: SamplingPlan, noise: torch.Tensor, uncond: Conditions | None, cond: Conditions,
                 settings: SamplerSettings) -> torch.Tensor:
        """One clip's latents from its noise: `plan`'s steps, guided where it says.

        The sampler's arithmetic runs on its CPU timesteps and the denoiser reads them from one tensor
        moved to the device before the loop: nothing in the loop waits for the device.
        """
        sampler = make_sampler(plan.sampler, self.net.behaviour.sampling_beta_schedule)
        sampler.set_timesteps(len(plan.timesteps))
        if hasattr(sampler, "set_begin_index"):  # multistep solvers: no search for the first step's index
            sampler.set_begin_index(0)
        on_device = sampler.timesteps.to(self.device)
        latents = noise.to(self.device, self.dtype) * sampler.init_noise_sigma
        both = batch_conditions(uncond, cond) if uncond is not None else None
        for i, t in enumerate(sampler.timesteps):
            if plan.guided[i]:
                null, pred = self._guided(latents, on_device[i], uncond, cond, both, settings)
                pred = null + plan.guidance_scale * (pred - null)
            else:
                pred = self.net.denoise(latents, on_device[i], cond, settings.audio_weights, self.net.behaviour.temporal)
            latents = sampler.step(pred, t, latents).prev_sample
        return latents

    def _guided(self, latents: torch.Tensor, t: torch.Tensor, uncond: Conditions, cond: Conditions, both: Conditions,
                settings: SamplerSettings) -> tuple[torch.Tensor, torch.Tensor]:
        """The (unconditional, conditional) predictions: one pass over both branches, or two."""
        net, temporal = self.net, self.net.behaviour.temporal
        if settings.batched_guidance and self.batched_guidance:
            try:
                return net.denoise(torch.cat([latents, latents]), t, both, settings.audio_weights, temporal).chunk(2)
            except torch.cuda.OutOfMemoryError:
                log.warning("out of GPU memory with both guidance branches in one batch: two passes from now on")
                self.batched_guidance = False
                torch.cuda.empty_cache()
        return (net.denoise(latents, t, uncond, settings.audio_weights, temporal),
                net.denoise(latents, t, cond, settings.audio_weights, temporal))
