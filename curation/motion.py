"""Motion that talking needs: the picture changes from frame to frame and the mouth moves while speech is heard.

Without SyncNet weights nothing else tells a talking face from a still photo with a speech track, a
slideshow of stills or a picture that freezes while the speech goes on. Two signals, both from what
the analysis decode already has:
- picture change: per frame, the mean absolute difference (grey levels, 0-255) between the frame
  and the one before, both shrunk to CHANGE_WIDTH px wide grey. A repeated or frozen frame reads
  about 0 (its decode is the same picture); a still photo held on screen reads 0 throughout. A run
  of unchanged frames longer than `motion.max_static_s` is cut out like a shot (`static_picture`).
- face motion: from the face-mesh landmarks of a clip, the mouth opening (curation.quality's
  mouth_opening: inner-lip gap over the outer eye-corner distance) and how much the face moves (mean per-frame landmark displacement over
  the same distance). `mouth_motion` is the spread (standard deviation) of the opening's fast part
  (the opening less its one-second moving average: syllables, not the slow drift a nod or a turn
  puts into the projected lip gap) over the frames where speech is heard (silero-vad on the source
  audio); a face that does not open and close its mouth while speech plays is `static_face`.
  On the fixtures (real photos): a talking mouth reads 0.020-0.028, the same photo with its head
  swaying and its mouth at rest 0.0065 (the face mesh's jitter).
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np
from scipy.ndimage import uniform_filter1d

from curation import reasons
from curation.config import MotionConfig
from curation.quality import EYE_CORNERS, Verdict, mouth_opening

CHANGE_WIDTH = 64


def small_grey(frame_rgb: np.ndarray) -> np.ndarray:
    """The frame as CHANGE_WIDTH px wide grey, float32 (area-averaged: sensor noise averages out)."""
    height, width = frame_rgb.shape[:2]
    size = (CHANGE_WIDTH, max(1, round(height * CHANGE_WIDTH / width)))
    grey = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA).astype(np.float32)


def frame_change(previous: Optional[np.ndarray], current: np.ndarray) -> float:
    """Mean absolute grey difference from the previous small frame (NaN for the first)."""
    return float("nan") if previous is None else float(np.mean(np.abs(current - previous)))


def static_stretches(changes: np.ndarray, start: int, end: int, fps: int, cfg: MotionConfig) -> list[tuple[int, int]]:
    """[a, b) frame ranges inside [start, end) that show one unchanged picture for longer than max_static_s.

    `changes[i]` compares frame i with frame i - 1, so a run of unchanged frames i0..i1 - 1 shows the
    picture of frame i0 - 1 too (the first frame of the run is where it froze).
    """
    still = np.zeros(end - start + 1, bool)
    still[1:-1] = changes[start + 1:end] < cfg.min_picture_change  # NaN (unmeasured) counts as changed
    edges = np.flatnonzero(np.diff(still.astype(np.int8)))
    longest = cfg.max_static_s * fps
    out = []
    for run_start, run_end in zip(edges[::2] + 1, edges[1::2] + 1):  # frames start+run_start .. start+run_end-1 unchanged
        a, b = start + run_start - 1, start + run_end
        if b - a > longest:
            out.append((a, b))
    return out


def split_static(start: int, end: int, stretches: list[tuple[int, int]]) -> list[tuple[int, int, bool]]:
    """[start, end) cut at the static stretches: (a, b, is_static) pieces in order, covering every frame."""
    pieces, at = [], start
    for a, b in stretches:
        if a > at:
            pieces.append((at, a, False))
        pieces.append((a, b, True))
        at = b
    if at < end:
        pieces.append((at, end, False))
    return pieces


def picture_change(changes: np.ndarray) -> float:
    """A clip's mean frame change (its first frame, compared across a cut or not at all, left out)."""
    inner = changes[1:]
    inner = inner[np.isfinite(inner)]
    return float(inner.mean()) if inner.size else float("nan")


def face_motion(landmarks: np.ndarray, voiced: np.ndarray, width: int, height: int, fps: int) -> dict[str, float]:
    """`mouth_motion` (spread of the mouth opening's fast part over voiced frames; NaN with under half
    a second of them) and `face_motion` (mean per-frame landmark displacement), both in eye-corner
    distances. Frames without landmarks are left out."""
    seen = np.isfinite(landmarks).all(axis=(1, 2))
    opening = np.array([mouth_opening(points, width, height) if ok else np.nan for points, ok in zip(landmarks, seen)])
    seen &= np.isfinite(opening)
    fast = opening[seen] - uniform_filter1d(opening[seen], size=fps, mode="nearest") if seen.any() else opening[seen]
    heard = voiced[seen]
    mouth = float(np.std(fast[heard])) if heard.sum() >= fps / 2 else float("nan")
    points = landmarks[..., :2] * np.array([width, height], np.float32)
    eyes = np.linalg.norm(points[:, EYE_CORNERS[0]] - points[:, EYE_CORNERS[1]], axis=-1)
    steps = np.linalg.norm(np.diff(points, axis=0), axis=-1).mean(axis=1) / eyes[1:]
    steps = steps[np.isfinite(steps)]
    return {"mouth_motion": mouth, "face_motion": float(steps.mean()) if steps.size else float("nan")}


def judge_motion(metrics: dict[str, float], cfg: MotionConfig) -> Verdict:
    """`static_picture` or `static_face`, with the value and threshold, when the clip does not move;
    Verdict(None) otherwise (a metric that was not measured, NaN, never fails)."""
    for code, key, name in ((reasons.STATIC_PICTURE, "picture_change", "min_picture_change"),
                            (reasons.STATIC_FACE, "mouth_motion", "min_mouth_motion")):
        value, limit = metrics[key], getattr(cfg, name)
        if value < limit:
            return Verdict(code, f"{key} {value:.4g} < motion.{name}={limit}")
    return Verdict(None)
