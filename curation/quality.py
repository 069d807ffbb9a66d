"""Quality step: per-frame face measurements, their per-clip medians and ranges, and the verdict.

Head pose comes from cv2.solvePnP: six face-mesh landmarks (nose tip, chin, outer eye corners,
mouth corners) are fitted to a small generic 3D face with a pinhole camera whose focal length is
the frame width. The angles are Euler angles of the fitted rotation (0 = looking into the camera).

The ranges (p5..p95 over a clip's frames) of pose and mouth opening say how much a clip varies, so
the data's balance can be read from the manifest; the crop's share outside the frame says how much
of the stored clip `crop_frame` would invent.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import cv2
import numpy as np

from curation import reasons
from curation.config import QualityConfig
from foundation.faces import outside_share

SHARPNESS_SIZE = 128

# Face-mesh indices of the pose points and their place on a generic head, in millimetres, in
# OpenCV camera axes (x right in the image, y down, z away from the camera), nose tip at 0.
# Proportions follow the face mesh's own depth estimates on frontal photos, so frontal faces
# read within a few degrees of 0.
POSE_LANDMARKS = [1, 152, 33, 263, 61, 291]
POSE_MODEL = np.array([
    [0.0, 0.0, 0.0],  # nose tip
    [0.0, 67.0, 50.0],  # chin
    [-45.0, -42.0, 35.0],  # outer eye corner on the image's left
    [45.0, -42.0, 35.0],  # outer eye corner on the image's right
    [-27.0, 26.0, 30.0],  # mouth corner on the image's left
    [27.0, 26.0, 30.0],  # mouth corner on the image's right
])

# Mouth opening: the inner-lip gap over the outer eye-corner distance (the face's size, which the
# jaw does not move), both in 3D so a turned head does not shrink the scale.
INNER_LIPS = (13, 14)
EYE_CORNERS = (33, 263)

METRICS = ("sharpness", "brightness", "yaw_deg", "pitch_deg", "roll_deg", "det_score")
# per-frame metric -> manifest column holding its robust range over the clip
RANGES = {"yaw_deg": "yaw_range_deg", "pitch_deg": "pitch_range_deg", "roll_deg": "roll_range_deg",
          "mouth_open": "mouth_open_range"}
RANGE_PERCENTILES = (5.0, 95.0)  # a range ignores the few frames where the mesh jumps


def _face_region(frame: np.ndarray, box_norm: np.ndarray) -> np.ndarray:
    height, width = frame.shape[:2]
    x0, x1 = np.clip(np.round(np.array(box_norm)[[0, 2]] * width), 0, width).astype(int)
    y0, y1 = np.clip(np.round(np.array(box_norm)[[1, 3]] * height), 0, height).astype(int)
    return frame[y0:y1, x0:x1]


def head_pose(landmarks: np.ndarray, width: int, height: int) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from normalised 478-point face-mesh landmarks; roll is positive
    when the face is turned clockwise in the image."""
    image_points = landmarks[POSE_LANDMARKS, :2].astype(np.float64) * [width, height]
    camera = np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], np.float64)
    ok, rvec, _ = cv2.solvePnP(POSE_MODEL, image_points, camera, None, flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        return float("nan"), float("nan"), float("nan")
    angles = cv2.RQDecomp3x3(cv2.Rodrigues(rvec)[0])[0]
    return float(angles[1]), float(angles[0]), float(angles[2])


def mouth_opening(landmarks: np.ndarray, width: int, height: int) -> float:
    """Inner-lip gap / outer eye-corner distance of normalised face-mesh landmarks (0 = closed)."""
    points = landmarks[[*INNER_LIPS, *EYE_CORNERS]].astype(np.float64) * [width, height, width]
    scale = np.linalg.norm(points[2] - points[3])
    return float(np.linalg.norm(points[0] - points[1]) / scale) if scale > 0 else float("nan")


def frame_metrics(frame: np.ndarray, box_norm: np.ndarray, landmarks: np.ndarray | None,
                  det_score: float = float("nan")) -> dict[str, float]:
    """Sharpness, brightness, head pose, mouth opening and detection score of the face in one analysis frame."""
    region = _face_region(frame, box_norm)
    sharpness = brightness = float("nan")
    if region.size:
        grey = cv2.cvtColor(region, cv2.COLOR_RGB2GRAY)
        brightness = float(grey.mean())
        small = cv2.resize(grey, (SHARPNESS_SIZE, SHARPNESS_SIZE), interpolation=cv2.INTER_AREA)
        sharpness = float(cv2.Laplacian(small, cv2.CV_64F).var())
    yaw = pitch = roll = mouth = float("nan")
    if landmarks is not None and np.isfinite(landmarks).all():
        yaw, pitch, roll = head_pose(landmarks, frame.shape[1], frame.shape[0])
        mouth = mouth_opening(landmarks, frame.shape[1], frame.shape[0])
    return {"sharpness": sharpness, "brightness": brightness, "yaw_deg": yaw, "pitch_deg": pitch,
            "roll_deg": roll, "mouth_open": mouth, "det_score": float(det_score)}


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    values = np.asarray(values, np.float64)
    return values[np.isfinite(values)]


def _median(values: Sequence[float] | np.ndarray) -> float:
    finite = _finite(values)
    return float(np.median(finite)) if finite.size else float("nan")


def _range(values: Sequence[float] | np.ndarray) -> float:
    finite = _finite(values)
    if not finite.size:
        return float("nan")
    low, high = np.percentile(finite, RANGE_PERCENTILES)
    return float(high - low)


def clip_metrics(per_frame: list[dict[str, float]], boxes_norm: np.ndarray, width: int, height: int,
                 landmark_presence: float, crop_px: Optional[np.ndarray] = None) -> dict[str, float]:
    """Per-clip medians of the frame metrics and the ranges of pose and mouth opening (NaNs skipped),
    the median face side in frame pixels (`face_px`), the share of frames with landmarks and, given
    the clip's crop squares (x0, y0, side in the same pixels), the mean share of the crop outside
    the frame (`crop_outside_share`)."""
    out = {key: _median([m[key] for m in per_frame]) for key in METRICS}
    out.update({column: _range([m[key] for m in per_frame]) for key, column in RANGES.items()})
    boxes = np.asarray(boxes_norm, np.float64)
    sides = np.maximum((boxes[:, 2] - boxes[:, 0]) * width, (boxes[:, 3] - boxes[:, 1]) * height)
    out["face_px"] = _median(sides)
    out["landmark_presence"] = float(landmark_presence)
    if crop_px is not None:
        out["crop_outside_share"] = float(np.mean(outside_share(crop_px, width, height)))
    return out


class Verdict(NamedTuple):
    reason: Optional[str]  # None: the clip passes
    detail: Optional[str] = None  # the failing metric's value and threshold


# (reason, metric, how it fails, QualityConfig field), in the order they are checked
CHECKS = (
    (reasons.NO_FACE, "landmark_presence", "below", "min_landmark_presence"),
    (reasons.FACE_TOO_SMALL, "face_px", "below", "min_face_px"),
    (reasons.CROP_OFF_FRAME, "crop_outside_share", "above", "max_crop_outside_share"),
    (reasons.TOO_DARK, "brightness", "below", "min_brightness"),
    (reasons.OVEREXPOSED, "brightness", "above", "max_brightness"),
    (reasons.BLURRY, "sharpness", "below", "min_sharpness"),
    (reasons.EXTREME_POSE, "yaw_deg", "abs above", "max_yaw_deg"),
    (reasons.EXTREME_POSE, "pitch_deg", "abs above", "max_pitch_deg"),
)


def judge(metrics: dict[str, float], cfg: QualityConfig) -> Verdict:
    """The first failing check, in a fixed order, with e.g. 'face_px 57.5 < quality.min_face_px=96'
    as its detail; Verdict(None) when the clip passes. A metric that was not measured (missing or
    NaN) does not fail its check."""
    for code, key, fails, name in CHECKS:
        value, limit = float(metrics.get(key, float("nan"))), getattr(cfg, name)
        shown, label = (abs(value), f"|{key}|") if fails == "abs above" else (value, key)
        if shown < limit if fails == "below" else shown > limit:
            return Verdict(code, f"{label} {shown:.4g} {'<' if fails == 'below' else '>'} quality.{name}={limit}")
    return Verdict(None)
