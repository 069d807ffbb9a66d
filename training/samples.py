"""Raw shard samples -> training samples for stage 1 (frame pairs) and stage 2 (clips with audio).

Masks are derived from the stored landmarks with foundation.masks, the same definition generation
applies to the single reference image; audio windows are built with model.projections.audio_windows,
whose clamped indices never go out of range (the reference's IndexError on short audio).

The frames come from a frame source: `PixelFrames` decodes them from the mp4 (uint8, converted
on the training device), `training.latent_cache.read.LatentFrames` reads their latents from the cache.
Both draw the same frame indices from the same generator, so a cached run sees the same frames.
"""
from __future__ import annotations

import logging
from typing import Any, Optional, Protocol

import numpy as np
import torch

from foundation import schema
from foundation.masks import region_masks
from model.presets import Preset
from model.projections import audio_windows
from training.config import DataConfig
from training.data import BadSample, Decoder, SkippedSample
from training.frames import decode_frames
from training.latent_cache.read import LatentFrames

log = logging.getLogger(__name__)


def _meta_and_landmarks(raw: dict[str, Any]) -> tuple[schema.ClipMeta, np.ndarray]:
    try:
        meta = schema.check_sample(raw)
    except (ValueError, KeyError, TypeError) as err:
        raise BadSample(str(err)) from err
    return meta, schema.decode_npy(raw[schema.KEY_LANDMARKS]).astype(np.float32)


def _face_inputs(landmarks: np.ndarray, meta: schema.ClipMeta, resolution: int, latent: int) -> dict[str, torch.Tensor]:
    """Face-region mask (3, R, R) for the face locator and soft region masks (3, r, r) from the given frames."""
    scaled = landmarks * (resolution / meta.size)
    masks = region_masks(scaled, (resolution, resolution), (latent, latent))
    face_region = torch.from_numpy(masks.face_region)[None].expand(3, -1, -1).clone()
    return {"face_mask": face_region, "region_masks": torch.from_numpy(masks.regions)}


def _face_embedding(raw: dict[str, Any]) -> torch.Tensor:
    return torch.from_numpy(schema.decode_npy(raw[schema.KEY_FACE_EMB]).astype(np.float32))


class FrameSource(Protocol):
    def __call__(self, raw: dict[str, Any], meta: schema.ClipMeta, reference: int, motion: list[int],
                 targets: list[int]) -> dict[str, torch.Tensor]:
        """`reference`/`motion_frames`/`frames` (pixels) or `reference_latents`/`motion_latents`/
        `target_mean`/`target_std` (latents); the motion entry only when `motion` is not empty."""


class PixelFrames:
    """The frames decoded from the clip's mp4 at `resolution`, as uint8."""

    def __init__(self, resolution: int) -> None:
        self.resolution = resolution

    def __call__(self, raw: dict[str, Any], meta: schema.ClipMeta, reference: int, motion: list[int],
                 targets: list[int]) -> dict[str, torch.Tensor]:
        try:
            pixels = decode_frames(raw[schema.KEY_VIDEO], [reference, *motion, *targets], self.resolution)
        except (ValueError, OSError) as err:
            raise BadSample(f"video: {err}") from err
        out = {"reference": pixels[0], "frames": pixels[1 + len(motion):]}
        if motion:
            out["motion_frames"] = pixels[1:1 + len(motion)]
        return out


def frame_source(resolution: int, cache_vae: Optional[str]) -> FrameSource:
    """Cached latents when a cache VAE identity is given (data.latents), else decoded pixels."""
    return LatentFrames(resolution, cache_vae) if cache_vae else PixelFrames(resolution)


class Stage1Decoder:
    """A reference and a target frame at least `min_gap` apart, the target's face mask, the identity."""

    def __init__(self, preset: Preset, min_gap: int, resolution: Optional[int] = None, cache_vae: Optional[str] = None,
                 ) -> None:
        self.resolution = preset.resolution if resolution is None else resolution
        self.latent = self.resolution // 8
        self.min_gap = min_gap
        self.source = frame_source(self.resolution, cache_vae)

    def __call__(self, raw: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        meta, landmarks = _meta_and_landmarks(raw)
        n = meta.num_frames
        if n < 2:
            raise BadSample(f"{n} frame(s): a pair needs two")
        gap = min(self.min_gap, n - 1)  # short clips: as far apart as they allow
        target = int(rng.integers(0, n))
        candidates = [i for i in range(n) if abs(i - target) >= gap]
        reference = int(rng.choice(candidates))
        face = _face_inputs(landmarks[target], meta, self.resolution, self.latent)
        return {
            **self.source(raw, meta, reference, [], [target]),  # frames: a one-frame clip
            "face_mask": face["face_mask"],
            "face_embedding": _face_embedding(raw),
        }


class Stage2Decoder:
    """`frames` consecutive frames, the `motion` frames before them, a reference frame, audio windows."""

    def __init__(self, preset: Preset, resolution: Optional[int] = None, cache_vae: Optional[str] = None) -> None:
        self.resolution = preset.resolution if resolution is None else resolution
        self.latent = self.resolution // 8
        self.frames = preset.train_frames
        self.motion = preset.train_motion_frames
        self.window = preset.audio_window
        self.source = frame_source(self.resolution, cache_vae)

    def __call__(self, raw: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        meta, landmarks = _meta_and_landmarks(raw)
        n, span = meta.num_frames, self.frames + self.motion
        if n < span:
            raise BadSample(f"{n} frames < {span} needed ({self.motion} motion + {self.frames} target)")
        features = schema.npy_view(raw[schema.KEY_AUDIO_FEATURES])
        if features.shape[0] != n:
            raise BadSample(f"{features.shape[0]} audio-feature frames for {n} video frames")
        start = int(rng.integers(self.motion, n - self.frames + 1))
        reference = int(rng.integers(0, n))
        # Only the rows the windows reach are copied and converted (a clip's features are several MB).
        low, high = max(0, start - self.window), min(n, start + self.frames + self.window)
        rows = torch.from_numpy(features[low:high].astype(np.float32))
        face = _face_inputs(landmarks[start:start + self.frames], meta, self.resolution, self.latent)
        motion, targets = list(range(start - self.motion, start)), list(range(start, start + self.frames))
        return {
            **self.source(raw, meta, reference, motion, targets),
            "audio_windows": audio_windows(rows, start - low, self.frames, self.window),
            "face_embedding": _face_embedding(raw),
            **face,
        }


class SyncFilter:
    """Wraps a decoder: counts the clips whose lip sync curation could not verify (`ClipMeta.sync_verified`
    false: judged by the weight-free fallback) and, with data.unverified_sync=exclude, leaves them out.

    The count is logged at the 1st, 2nd, 4th, 8th, ... sample of each reader.
    """

    def __init__(self, decode: Decoder, cfg: DataConfig) -> None:
        self.decode = decode
        self.include = cfg.unverified_sync == "include"
        self.give_up_after = cfg.bad_check_after
        self.seen = self.unverified = 0

    def __call__(self, raw: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        try:
            verified = schema.ClipMeta.from_json(raw[schema.KEY_META]).sync_verified
        except (KeyError, ValueError, TypeError):
            return self.decode(raw, rng)  # the decoder says what is wrong with the sample
        self.seen += 1
        self.unverified += not verified
        if self.seen & (self.seen - 1) == 0 and self.unverified:
            log.info("unverified lip sync: %d of the first %d clips (data.unverified_sync=%s)", self.unverified,
                     self.seen, "include" if self.include else "exclude")
        if verified or self.include:
            return self.decode(raw, rng)
        if self.unverified == self.seen >= self.give_up_after:
            raise RuntimeError(f"the first {self.seen} clips all have unverified lip sync and data.unverified_sync="
                               "exclude leaves them out: curate with SyncNet weights (curation's pretrained_dir) or include them")
        raise SkippedSample(f"{raw.get('__key__')}: unverified lip sync")
