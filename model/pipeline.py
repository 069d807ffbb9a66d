"""Clip-by-clip sampling: DDIM with classifier-free guidance, the last generated frames carried on.

For every clip of `clip_frames` frames:
  motion frames  = the reference image repeated (first clip; training must use the same) or the
                   last `motion_frames` decoded frames of the previous clip, VAE-encoded again;
  conditions     = HalloNet.encode(...) once per clip, or with CFG HalloNet.encode_guided(...): the pair
                   of it and the `unconditional(behaviour)` branch (no reference attention, ImageProj(0),
                   zero audio tokens, and no face-locator features unless the weights never trained
                   without them), paired as the weights' behaviour says;
  guidance       = on the steps at or above `cfg_min_timestep` only (default: the weights' behaviour,
                   600 of 1000): the noisy steps decide the mouth's opening and the pose, while guiding
                   the nearly clean ones only pushes detail past the conditional prediction;
  temporal       = the motion and audio modules run only when the weights trained them
                   (behaviour.temporal; a stage-1 export generates frame by frame from the reference);
  denoise        = `steps` DDIM steps (beta schedule: the weights' behaviour) from noise drawn from
                   one seeded CPU generator, so the same seed gives the same video on any device;
  decode         = VAE decode; the video is trimmed to the audio's frame count at the end.

Long audio: `stream` yields the video clip by clip (model.generate hands each to the video encoder as
it comes), so memory stays flat however long the audio; only the audio features are held whole (about
40 KB a frame for wav2vec2-base), on the CPU, each clip's windows moved to the device. The last clip
is generated whole, its audio windows clamped to the last feature row past the audio's end, and cut
to the frames the audio covers: the video lasts as long as the audio, to the frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from diffusers import AutoencoderKL

from model.net import HalloNet
from model.progress import clip_progress
from model.projections import audio_windows
from model.scheduler import make_scheduler

VAE_CHUNK = 8  # frames per VAE decode call (memory)


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
    cfg: float = 3.5
    cfg_min_timestep: int | None = None  # guide only the steps at or above this timestep; None = the weights' behaviour
    audio_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # pose, face, lip
    seed: int = 42
    frames: int = 0  # video frames to produce; 0 = one per audio feature row (fewer when the features were padded)


class HalloPipeline:
    def __init__(self, net: HalloNet, vae: AutoencoderKL, device: torch.device) -> None:
        """net and vae already in the dtype to run in (load them with it: see model.weights)."""
        self.net = net.to(device).eval()
        self.vae = vae.to(device).eval()
        self.device, self.dtype = device, next(net.parameters()).dtype
        self.scale = float(vae.config.scaling_factor)

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
        total = settings.frames or audio_features.shape[0]
        f, m = settings.clip_frames, settings.motion_frames
        net, scheduler = self.net, make_scheduler(self.net.behaviour.sampling_beta_schedule)
        temporal = net.behaviour.temporal
        min_timestep = net.behaviour.guidance_min_timestep if settings.cfg_min_timestep is None else settings.cfg_min_timestep
        guided = settings.cfg != 1.0 and min_timestep < scheduler.config.num_train_timesteps  # 999 is always a step
        generator = torch.Generator("cpu").manual_seed(settings.seed)
        window = int(net.audio_proj.config.window)
        image = ref.image[None].to(self.device, self.dtype)
        ref_latents = self._encode(image)
        inputs = dict(
            face_embedding=ref.embedding[None].to(self.device, self.dtype),
            face_mask=ref.face_region[None, None].expand(1, 3, -1, -1).to(self.device, self.dtype),
            region_masks=ref.regions[None].to(self.device, self.dtype),
        )
        previous = None  # the last m decoded frames of the previous clip
        for clip in clip_progress(math.ceil(total / f), progress):
            motion = None
            if m and temporal:  # the first clip's motion frames are the reference repeated: its latents, as encoded
                motion = ref_latents[:, None].repeat(1, m, 1, 1, 1) if previous is None else self._encode(previous)[None]
            windows = audio_windows(audio_features, clip * f, f, window)[None].to(self.device, self.dtype) if temporal else None
            if guided:
                uncond, cond = net.encode_guided(ref_latents, motion, audio_windows=windows,
                                                 frames=f, **inputs)
            else:
                uncond, cond = None, net.encode(ref_latents, motion, audio_windows=windows, **inputs)
            shape = (1, ref_latents.shape[1], f, *ref_latents.shape[2:])
            latents = torch.randn(shape, generator=generator).to(self.device, self.dtype) * scheduler.init_noise_sigma
            scheduler.set_timesteps(settings.steps, device=self.device)
            for t in scheduler.timesteps:
                pred = net.denoise(latents, t, cond, settings.audio_weights, temporal)
                if uncond is not None and int(t) >= min_timestep:
                    null = net.denoise(latents, t, uncond, settings.audio_weights, temporal)
                    pred = null + settings.cfg * (pred - null)
                latents = scheduler.step(pred, t, latents).prev_sample
            pixels = self._decode(latents)
            previous = pixels[pixels.shape[0] - m :]
            yield ((pixels[: total - clip * f].float().permute(0, 2, 3, 1) + 1) * 127.5).round().byte().cpu().numpy()
