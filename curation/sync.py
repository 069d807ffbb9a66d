"""Lip-sync scoring: an audio-video offset and a confidence per clip, defined as syncnet_python does.

For every candidate offset k in [-N, N] a scorer computes one distance between the video and the
audio shifted by k frames; that gives a curve of 2N+1 distances, and

    offset     = the k at the curve's minimum
    min_dist   = the minimum
    confidence = median(curve) - min_dist

Sign convention: a positive offset means the audio lags the video (the sound of a mouth movement
comes `offset` frames later), the same sign as the fixture generator's `shift_frames`. The
distance at offset k compares video frame i with audio frame i + k. syncnet_python prints
`vshift - argmin`, which is the negative of this offset.

Backends (`sync.backend`):
- `syncnet`: the SyncNet network (`foundation/syncnet.py`, syncnet_python's scoring path) with
  syncnet_python-format weights; a clip passes when its confidence and offset pass the thresholds
  (it is then `sync_verified`), otherwise it is `out_of_sync`.
- `envelope`: a weight-free fallback: mouth opening from the face-mesh landmarks against the
  speech loudness envelope. Distance = minus the Fisher z-statistic of the correlation of their
  frame-to-frame changes, so the confidence is in standard errors: how far the best offset's
  correlation stands above the typical offset's. Not comparable with SyncNet's scale. On real
  speech (and on the fixtures, whose mouths articulate rather than follow loudness) it rarely
  reaches its threshold, so it cannot confirm sync: it rejects only a clip it measures as
  clearly shifted with confidence, and keeps the rest as not verified.
- `auto` (default): `syncnet` when its weights are found (`sync.weights`, else
  `pretrained_dir/syncnet/syncnet_v2.model`), otherwise `envelope` with a warning.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional, Protocol, Sequence

import numpy as np

from curation import reasons
from curation.config import SyncConfig
from foundation.config import ConfigError
from foundation.syncnet import (FaceTrack, SyncNetScorer, SyncResult, face_track_crops, landmark_boxes, summarize_curve,
                                weights_in)

# face-mesh ids: inner lips (upper 13, lower 14) and inner mouth corners (78, 308)
UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
MOUTH_CORNERS = (78, 308)
ENVELOPE_FLOOR_DB = 50.0  # loudness below the clip's loudest frame by more than this counts as silence


@dataclass
class ClipSignals:
    """What a scorer may look at for one clip (all of it already decoded, except the crops)."""

    landmarks: np.ndarray  # (frames, 478, 2) face-mesh points in output-crop pixels
    audio: np.ndarray  # float32 mono, frames * sample_rate / fps samples
    sample_rate: int
    fps: int
    crops: Callable[[], Sequence[np.ndarray]]  # the square RGB crops; decoded on first call, then cached

    @property
    def num_frames(self) -> int:
        return len(self.landmarks)


class SyncScorer(Protocol):
    name: str
    default_min_confidence: float
    verifies: bool  # a pass means the lips were checked against the speech (False: weight-free fallback)

    def score_many(self, clips: Sequence[ClipSignals], max_offset: int) -> list[SyncResult]: ...


def offsets(max_offset: int) -> np.ndarray:
    return np.arange(-max_offset, max_offset + 1)


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """Per frame, the inner-lip gap divided by the inner mouth width (scale and zoom free)."""
    gap = np.linalg.norm(landmarks[:, UPPER_INNER_LIP] - landmarks[:, LOWER_INNER_LIP], axis=1)
    width = np.linalg.norm(landmarks[:, MOUTH_CORNERS[0]] - landmarks[:, MOUTH_CORNERS[1]], axis=1)
    return gap / np.maximum(width, 1e-6)


def loudness_db(audio: np.ndarray, sample_rate: int, fps: int, frames: int) -> np.ndarray:
    """Per video frame, the RMS level in dB, floored ENVELOPE_FLOOR_DB below the loudest frame."""
    hop = sample_rate // fps
    chunk = np.zeros(frames * hop, np.float64)
    chunk[:min(len(audio), frames * hop)] = audio[:frames * hop]
    rms = np.sqrt(np.mean(chunk.reshape(frames, hop) ** 2, axis=1))
    db = 20 * np.log10(rms + 1e-10)
    return np.maximum(db, db.max() - ENVELOPE_FLOOR_DB)


def _lagged_z(video: np.ndarray, audio: np.ndarray, k: int) -> float:
    """Fisher z-statistic of the correlation of video[i] with audio[i + k] over their overlap."""
    lo, hi = max(0, -k), min(len(video), len(audio) - k)
    v, a = video[lo:hi], audio[lo + k:hi + k]
    if hi - lo < 4 or v.std() == 0 or a.std() == 0:
        return 0.0
    r = float(np.clip(np.corrcoef(v, a)[0, 1], -0.9999, 0.9999))
    return float(np.arctanh(r) * np.sqrt(hi - lo - 3))


class EnvelopeScorer:
    """Weight-free scorer: mouth opening (landmarks) against speech loudness (audio).

    Both signals are differenced frame to frame (opening and loudness changes, which removes slow
    drifts and makes neighbouring frames nearly independent), then correlated at every offset.
    """

    name = "envelope"
    default_min_confidence = 4.5
    verifies = False

    def score(self, clip: ClipSignals, max_offset: int) -> SyncResult:
        mouth = np.diff(mouth_opening(clip.landmarks.astype(np.float64)))
        loud = np.diff(loudness_db(clip.audio, clip.sample_rate, clip.fps, clip.num_frames))
        return summarize_curve(np.array([-_lagged_z(mouth, loud, int(k)) for k in offsets(max_offset)]))

    def score_many(self, clips: Sequence[ClipSignals], max_offset: int) -> list[SyncResult]:
        return [self.score(clip, max_offset) for clip in clips]


# SyncNet backend: a clip's face track is its output crops with the face-mesh extent as the face box per
# frame (syncnet_python tracks S3FD detections instead; its crop framing and smoothing are applied to
# ours). All clips handed over together share the network's batches.
def clip_face_track(clip: ClipSignals) -> FaceTrack:
    return FaceTrack(face_track_crops(clip.crops(), landmark_boxes(clip.landmarks)), clip.audio)


class ClipSyncNet:
    name = "syncnet"
    default_min_confidence = 3.0  # LatentSync's filter
    verifies = True

    def __init__(self, weights: str | Path, device: Optional[str] = None) -> None:
        self.scorer = SyncNetScorer(weights, None if device in (None, "auto") else device)

    def score_many(self, clips: Sequence[ClipSignals], max_offset: int) -> list[SyncResult]:
        return self.scorer.score([clip_face_track(clip) for clip in clips], max_offset)


def resolve_backend(cfg: SyncConfig, base: str | Path) -> SyncConfig:
    """The backend made concrete: syncnet with its weights file, or envelope.

    `auto` takes SyncNet when `sync.weights` (which must then exist) or BASE/syncnet/syncnet_v2.model
    in the base folder is there; `syncnet` insists on one of them.
    """
    if cfg.backend == "envelope":
        return cfg
    weights = cfg.weights or str(weights_in(base))
    if Path(weights).is_file():
        return replace(cfg, backend="syncnet", weights=weights)
    if cfg.backend == "syncnet" or cfg.weights:
        raise ConfigError(f"config key 'sync.weights': no SyncNet weights file at {weights}")
    return replace(cfg, backend="envelope")


FALLBACK_WARNING = ("no SyncNet weights (sync.weights, or {path}): lip sync is judged by the weight-free envelope "
                    "scorer, which cannot confirm sync on real speech; clips it cannot judge are kept as "
                    "unverified (manifest sync_verified=false), only confidently shifted ones are rejected. "
                    "Fetch the weights with `hallo-weights fetch --to BASE` and set pretrained_dir=BASE.")


def make_scorer(cfg: SyncConfig, base: str | Path) -> SyncScorer:
    """The configured backend, with its weights loaded (call once per worker)."""
    cfg = resolve_backend(cfg, base)
    if cfg.backend == "syncnet":
        return ClipSyncNet(cfg.weights, cfg.device)
    return EnvelopeScorer()


def min_confidence(cfg: SyncConfig, scorer: SyncScorer) -> float:
    return scorer.default_min_confidence if cfg.min_confidence is None else cfg.min_confidence


@dataclass(frozen=True)
class SyncVerdict:
    reason: Optional[str]  # out_of_sync, or None: the clip is kept
    verified: bool  # kept because the scorer confirmed the sync (False: kept unverified, or rejected)
    shift: int  # frames the stored audio is moved to correct the offset (0 when no offset is trusted)


def judge_sync(result: SyncResult, cfg: SyncConfig, scorer: SyncScorer) -> SyncVerdict:
    """What a scorer's measurement means for the clip.

    A verifying scorer (SyncNet) keeps a clip only when it is confident and the offset is small
    enough to correct. The fallback cannot tell a real in-sync clip from a shifted one, so it
    rejects only a confident measurement of a large offset and keeps everything else unverified,
    correcting the offset only when it is confident of it.
    """
    confident = result.confidence >= min_confidence(cfg, scorer)
    in_range = abs(result.offset) <= cfg.max_abs_offset
    if scorer.verifies:
        passed = confident and in_range
        return SyncVerdict(None if passed else reasons.OUT_OF_SYNC, passed, result.offset if passed else 0)
    if confident and not in_range:
        return SyncVerdict(reasons.OUT_OF_SYNC, False, 0)
    return SyncVerdict(None, False, result.offset if confident else 0)


def audio_window(audio: np.ndarray, start: int, end: int, hop: int) -> np.ndarray:
    """The audio under video frames [start, end) (hop samples per frame), zeros outside the source.

    Frames may lie outside the source: a clip whose audio lags by `offset` frames is put in sync by
    taking the window [start + offset, end + offset).
    """
    lo, hi = start * hop, end * hop
    out = np.zeros(hi - lo, np.float32)
    src_lo, src_hi = max(lo, 0), min(hi, len(audio))
    if src_hi > src_lo:
        out[src_lo - lo:src_hi - lo] = audio[src_lo:src_hi]
    return out
