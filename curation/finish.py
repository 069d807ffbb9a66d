"""What happens to one clip that passed the quality step: speech, lip-sync, annotations, sample.

Everything here works from what the face step already has (landmarks in crop pixels, the source
audio decoded once); the clip's full-resolution crops are decoded lazily, at most once, when the
SyncNet backend or the annotations and the shard sample need them. The heavy models are built
once per worker process (`clip_models`); `preflight` checks their files at start-up.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from curation import reasons
from foundation import schema
from curation.annotations import Annotator, check_model_dirs, pin_model_dirs
from curation.clips import Candidate
from curation.config import CurationConfig
from curation.download import Downloaded
from curation.export import build_sample
from foundation.faces import crop_frame, landmarks_to_crop
from curation.media import MediaInfo, iter_frames
from curation.shards import SourceShardWriter
from curation.sources import Source
from curation.speech import VocalSeparator, load_separator, separate, separator_factory, speech_ratio
from curation.sync import ClipSignals, SyncScorer, audio_window, judge_sync, make_scorer
from foundation.config import ConfigError

log = logging.getLogger(__name__)


def fill_missing_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """Interpolate frames where the mesh was lost, so stored landmarks never hold NaN."""
    valid = ~np.isnan(landmarks[:, 0, 0])
    if valid.all():
        return landmarks
    idx = np.arange(len(landmarks))
    flat = landmarks.reshape(len(landmarks), -1)
    filled = np.stack([np.interp(idx, idx[valid], flat[valid, j]) for j in range(flat.shape[1])], axis=1)
    return filled.reshape(landmarks.shape).astype(landmarks.dtype)


@dataclass
class ClipModels:
    """The heavy per-clip helpers of one worker process."""

    separator: VocalSeparator
    scorer: SyncScorer
    annotator: Optional[Annotator]  # None when annotations.enabled is false


_MODELS: dict[str, ClipModels] = {}


def clip_models(cfg: CurationConfig) -> ClipModels:
    """Built once per process (a Ray worker runs many sources) for the config's model settings."""
    key = repr((cfg.speech, cfg.sync, cfg.annotations))
    if key not in _MODELS:
        _MODELS.clear()
        _MODELS[key] = ClipModels(
            separator=load_separator(cfg.speech.separator, cfg.speech.separator_args),
            scorer=make_scorer(cfg.sync),
            annotator=Annotator(cfg.annotations) if cfg.annotations.enabled else None,
        )
    return _MODELS[key]


def preflight(cfg: CurationConfig) -> CurationConfig:
    """Cheap start-up checks of what `clip_models` will load; raises ConfigError naming the key.

    Entry points call it before scheduling work, so a missing model folder is one clear error
    instead of a failure in every source. Returns the config to run with: the annotation model
    folders filled in from annotations.pretrained_dir and pinned (`pin_model_dirs`).
    """
    if cfg.annotations.enabled:
        check_model_dirs(cfg.annotations)
        cfg = replace(cfg, annotations=pin_model_dirs(cfg.annotations))
    if cfg.sync.backend == "syncnet" and not Path(cfg.sync.weights or "").is_file():
        raise ConfigError(f"config key 'sync.weights': no SyncNet weights file at {cfg.sync.weights}")
    if cfg.speech.separator:
        try:
            separator_factory(cfg.speech.separator)
        except (ImportError, AttributeError, ValueError) as err:
            raise ConfigError(f"config key 'speech.separator': cannot import {cfg.speech.separator!r}: {err}") from err
    return cfg


def crop_loader(info: MediaInfo, cand: Candidate, boxes: np.ndarray, size: int) -> Callable[[], list[np.ndarray]]:
    """The clip's output crops from one full-resolution decode of its span, done on first use only."""

    @functools.cache
    def crops() -> list[np.ndarray]:
        return [crop_frame(frame, box, size) for (_, frame), box in zip(iter_frames(info, cand.start, cand.end), boxes)]

    return crops


def speech_and_sync(clip: ClipSignals, cfg: CurationConfig, scorer: SyncScorer) -> tuple[Optional[str], dict[str, float], int]:
    """The speech step, then the lip-sync step: (reason or None, their metrics, detected audio offset)."""
    ratio = speech_ratio(clip.audio, clip.sample_rate, cfg.speech)
    if ratio < cfg.speech.min_ratio:
        return reasons.NO_SPEECH, {"speech_ratio": ratio}, 0
    result = scorer.score(clip, cfg.sync.max_offset)
    metrics = {"speech_ratio": ratio, "sync_offset": result.offset, "sync_confidence": result.confidence,
               "sync_min_dist": result.min_dist}
    return judge_sync(result, cfg.sync, scorer), metrics, result.offset


def finish_clip(
    writer: SourceShardWriter,
    source: Source,
    downloaded: Downloaded,
    info: MediaInfo,
    cand: Candidate,
    boxes: np.ndarray,
    landmarks: np.ndarray,
    audio: np.ndarray,
    cfg: CurationConfig,
    models: ClipModels,
) -> tuple[Candidate, Optional[str]]:
    """Speech and lip-sync checks of a clip that passed quality; if it passes, its annotated sample.

    Returns the candidate with its verdict and new metrics, and the shard it went to (None if rejected).
    """
    size, frames, rate = cfg.faces.output_size, cand.end - cand.start, cfg.media.sample_rate
    hop = rate // info.fps
    landmarks_crop = landmarks_to_crop(fill_missing_landmarks(landmarks), boxes, info.width, info.height, size)
    crops = crop_loader(info, cand, boxes, size)
    # One separation covers the clip and every shift a sync correction may apply.
    pad = cfg.sync.max_abs_offset
    mixture = audio_window(audio, cand.start - pad, cand.end + pad, hop)
    vocals = separate(models.separator, mixture, rate)

    def shifted(signal: np.ndarray, offset: int) -> np.ndarray:
        return signal[(pad + offset) * hop:(pad + offset + frames) * hop]

    reason, metrics, offset = speech_and_sync(ClipSignals(landmarks_crop, shifted(vocals, 0), rate, info.fps, crops),
                                              cfg, models.scorer)
    cand = replace(cand, reason=reason, metrics={**cand.metrics, **metrics})
    log.debug("%s: %s -> %s", cand.clip_id, metrics, reason or "accepted")
    if reason is not None:
        return cand, None
    annotations, face_found = (models.annotator.annotate(crops(), landmarks_crop, shifted(vocals, offset), info.fps)
                               if models.annotator else ({}, False))
    meta = schema.ClipMeta(
        clip_id=cand.clip_id, source=source.raw, source_id=source.source_id,
        start_s=cand.start / info.fps, end_s=cand.end / info.fps, num_frames=frames,
        fps=info.fps, sample_rate=rate, size=size,
        crop_boxes=np.round(boxes, 2).tolist(), metrics=cand.metrics, provenance=downloaded.provenance,
        sync_backend=models.scorer.name, audio_shift_frames=offset, vocal_separator=cfg.speech.separator,
        annotated=models.annotator is not None, face_found=face_found,
    )
    sample = build_sample(meta, crops(), landmarks_crop, shifted(mixture, offset), cfg.shards.video_crf, annotations)
    return cand, writer.write(sample)
