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
- `envelope` (default, no weights): mouth opening from the face-mesh landmarks against the speech
  loudness envelope. Distance = minus the Fisher z-statistic of the correlation of their
  frame-to-frame changes, so the confidence is in standard errors: how far the best offset's
  correlation stands above the typical offset's. Unrelated mouth/audio pairs score about 2
  (99% below 4.5), matching pairs 7-10 on the bundled fixtures. Not comparable with SyncNet's scale.
- `syncnet`: the SyncNet network (`curation/syncnet.py`) with syncnet_python-format weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Protocol, Sequence

import numpy as np

from curation import reasons
from curation.config import SyncConfig

# face-mesh ids: inner lips (upper 13, lower 14) and inner mouth corners (78, 308)
UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
MOUTH_CORNERS = (78, 308)
ENVELOPE_FLOOR_DB = 50.0  # loudness below the clip's loudest frame by more than this counts as silence


@dataclass(frozen=True)
class SyncResult:
    offset: int  # frames the audio lags the video (negative: it leads)
    min_dist: float
    confidence: float
    curve: np.ndarray  # distance per offset -N..N


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

    def score(self, clip: ClipSignals, max_offset: int) -> SyncResult: ...


def offsets(max_offset: int) -> np.ndarray:
    return np.arange(-max_offset, max_offset + 1)


def summarize_curve(curve: np.ndarray) -> SyncResult:
    """Offset, min distance and confidence of a distance curve over offsets -N..N (syncnet_python's maths)."""
    curve = np.asarray(curve, np.float64)
    if curve.ndim != 1 or len(curve) % 2 == 0:
        raise ValueError(f"a distance curve has 2N+1 values, got shape {curve.shape}")
    best = int(np.argmin(curve))
    min_dist = float(curve[best])
    return SyncResult(best - (len(curve) - 1) // 2, min_dist, float(np.median(curve)) - min_dist, curve)


def feature_distance_curve(video: np.ndarray, audio: np.ndarray, max_offset: int) -> np.ndarray:
    """syncnet_python's curve from per-frame embeddings (frames, dim): for each offset k, the mean
    over video frames i of the L2 distance to audio frame i + k, the audio zero-padded at both ends."""
    n = len(video)
    padded = np.concatenate([np.zeros((max_offset, audio.shape[1])), audio[:n], np.zeros((max_offset, audio.shape[1]))])
    windows = np.stack([padded[i:i + 2 * max_offset + 1] for i in range(n)])  # (n, 2N+1, dim)
    # torch.pairwise_distance adds eps=1e-6 to the difference; kept so the numbers match
    dist = np.linalg.norm(video[:, None, :] - windows + 1e-6, axis=2)
    return dist.mean(axis=0)


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

    def score(self, clip: ClipSignals, max_offset: int) -> SyncResult:
        mouth = np.diff(mouth_opening(clip.landmarks.astype(np.float64)))
        loud = np.diff(loudness_db(clip.audio, clip.sample_rate, clip.fps, clip.num_frames))
        return summarize_curve(np.array([-_lagged_z(mouth, loud, int(k)) for k in offsets(max_offset)]))


def make_scorer(cfg: SyncConfig) -> SyncScorer:
    """The configured backend, with its weights loaded (call once per worker)."""
    if cfg.backend == "syncnet":
        from curation.syncnet import SyncNetScorer

        return SyncNetScorer(cfg.weights)
    return EnvelopeScorer()


def min_confidence(cfg: SyncConfig, scorer: SyncScorer) -> float:
    return scorer.default_min_confidence if cfg.min_confidence is None else cfg.min_confidence


def judge_sync(result: SyncResult, cfg: SyncConfig, scorer: SyncScorer) -> Optional[str]:
    """`out_of_sync` when the confidence is too low or the offset too large to trust a correction."""
    if result.confidence < min_confidence(cfg, scorer) or abs(result.offset) > cfg.max_abs_offset:
        return reasons.OUT_OF_SYNC
    return None


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
