"""Raw shard samples -> training samples for stage 1 (frame pairs) and stage 2 (clips with audio).

Masks are derived from the stored landmarks with foundation.masks, the same definition generation
applies to the single reference image; audio windows are built with model.projections.audio_windows,
whose clamped indices never go out of range (the reference's IndexError on short audio).
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from foundation import schema
from foundation.masks import region_masks
from model.presets import Preset
from model.projections import audio_windows
from training.config import DataConfig
from training.data import BadSample, Decoder, SkippedSample
from training.frames import decode_frames

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


def _decode(raw: dict[str, Any], indices: list[int], resolution: int) -> torch.Tensor:
    try:
        return decode_frames(raw[schema.KEY_VIDEO], indices, resolution)
    except (ValueError, OSError) as err:
        raise BadSample(f"video: {err}") from err


class Stage1Decoder:
    """A reference and a target frame at least `min_gap` apart, the target's face mask, the identity."""

    def __init__(self, preset: Preset, min_gap: int, resolution: int = 0) -> None:
        self.resolution = resolution or preset.resolution
        self.latent = self.resolution // 8
        self.min_gap = min_gap

    def __call__(self, raw: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        meta, landmarks = _meta_and_landmarks(raw)
        n = meta.num_frames
        if n < 2:
            raise BadSample(f"{n} frame(s): a pair needs two")
        gap = min(self.min_gap, n - 1)  # short clips: as far apart as they allow
        target = int(rng.integers(0, n))
        candidates = [i for i in range(n) if abs(i - target) >= gap]
        reference = int(rng.choice(candidates))
        frames = _decode(raw, [reference, target], self.resolution)
        face = _face_inputs(landmarks[target], meta, self.resolution, self.latent)
        return {
            "reference": frames[0],
            "frames": frames[1:],  # (1, 3, H, W): a one-frame clip
            "face_mask": face["face_mask"],
            "face_embedding": _face_embedding(raw),
        }


class Stage2Decoder:
    """`frames` consecutive frames, the `motion` frames before them, a reference frame, audio windows."""

    def __init__(self, preset: Preset, resolution: int = 0) -> None:
        self.resolution = resolution or preset.resolution
        self.latent = self.resolution // 8
        self.frames = preset.train_frames
        self.motion = preset.train_motion_frames
        self.window = preset.audio_window

    def __call__(self, raw: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        meta, landmarks = _meta_and_landmarks(raw)
        n, span = meta.num_frames, self.frames + self.motion
        if n < span:
            raise BadSample(f"{n} frames < {span} needed ({self.motion} motion + {self.frames} target)")
        features = torch.from_numpy(schema.decode_npy(raw[schema.KEY_AUDIO_FEATURES]).astype(np.float32))
        if features.shape[0] != n:
            raise BadSample(f"{features.shape[0]} audio-feature frames for {n} video frames")
        start = int(rng.integers(self.motion, n - self.frames + 1))
        reference = int(rng.integers(0, n))
        indices = [reference, *range(start - self.motion, start + self.frames)]
        pixels = _decode(raw, indices, self.resolution)
        face = _face_inputs(landmarks[start:start + self.frames], meta, self.resolution, self.latent)
        return {
            "reference": pixels[0],
            "motion_frames": pixels[1:1 + self.motion],
            "frames": pixels[1 + self.motion:],
            "audio_windows": audio_windows(features, start, self.frames, self.window),
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
