"""Quality step: per-frame face measurements, their per-clip medians, and the keep/reject verdict.

Head pose comes from cv2.solvePnP: six face-mesh landmarks (nose tip, chin, outer eye corners,
mouth corners) are fitted to a small generic 3D face with a pinhole camera whose focal length is
the frame width. The angles are Euler angles of the fitted rotation (0 = looking into the camera).
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from curation import reasons
from curation.config import QualityConfig

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

METRICS = ("sharpness", "brightness", "yaw_deg", "pitch_deg", "det_score")


def _face_region(frame: np.ndarray, box_norm: np.ndarray) -> np.ndarray:
    height, width = frame.shape[:2]
    x0, x1 = np.clip(np.round(np.array(box_norm)[[0, 2]] * width), 0, width).astype(int)
    y0, y1 = np.clip(np.round(np.array(box_norm)[[1, 3]] * height), 0, height).astype(int)
    return frame[y0:y1, x0:x1]


def head_pose(landmarks: np.ndarray, width: int, height: int) -> tuple[float, float]:
    """(yaw, pitch) in degrees from normalised 478-point face-mesh landmarks."""
    image_points = landmarks[POSE_LANDMARKS, :2].astype(np.float64) * [width, height]
    camera = np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], np.float64)
    ok, rvec, _ = cv2.solvePnP(POSE_MODEL, image_points, camera, None, flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        return float("nan"), float("nan")
    angles = cv2.RQDecomp3x3(cv2.Rodrigues(rvec)[0])[0]
    return float(angles[1]), float(angles[0])


def frame_metrics(frame: np.ndarray, box_norm: np.ndarray, landmarks: np.ndarray | None,
                  det_score: float = float("nan")) -> dict[str, float]:
    """Sharpness, brightness, head pose and detection score of the face in one analysis frame."""
    region = _face_region(frame, box_norm)
    sharpness = brightness = float("nan")
    if region.size:
        grey = cv2.cvtColor(region, cv2.COLOR_RGB2GRAY)
        brightness = float(grey.mean())
        small = cv2.resize(grey, (SHARPNESS_SIZE, SHARPNESS_SIZE), interpolation=cv2.INTER_AREA)
        sharpness = float(cv2.Laplacian(small, cv2.CV_64F).var())
    yaw = pitch = float("nan")
    if landmarks is not None and np.isfinite(landmarks).all():
        yaw, pitch = head_pose(landmarks, frame.shape[1], frame.shape[0])
    return {"sharpness": sharpness, "brightness": brightness, "yaw_deg": yaw, "pitch_deg": pitch,
            "det_score": float(det_score)}


def _median(values: Sequence[float] | np.ndarray) -> float:
    finite = np.asarray(values, np.float64)
    finite = finite[np.isfinite(finite)]
    return float(np.median(finite)) if finite.size else float("nan")


def clip_metrics(per_frame: list[dict[str, float]], boxes_norm: np.ndarray, width: int, height: int,
                 landmark_presence: float) -> dict[str, float]:
    """Per-clip medians of the frame metrics (NaNs skipped), the median face side in source
    pixels (`face_px`) and the share of frames with landmarks."""
    out = {key: _median([m[key] for m in per_frame]) for key in METRICS}
    boxes = np.asarray(boxes_norm, np.float64)
    sides = np.maximum((boxes[:, 2] - boxes[:, 0]) * width, (boxes[:, 3] - boxes[:, 1]) * height)
    out["face_px"] = _median(sides)
    out["landmark_presence"] = float(landmark_presence)
    return out


def judge(metrics: dict[str, float], cfg: QualityConfig) -> str | None:
    """The first failing reason code, in a fixed order, or None when the clip passes.
    A metric that could not be measured (NaN) does not fail its check."""
    checks = [
        (reasons.NO_FACE, metrics["landmark_presence"] < cfg.min_landmark_presence),
        (reasons.FACE_TOO_SMALL, metrics["face_px"] < cfg.min_face_px),
        (reasons.TOO_DARK, metrics["brightness"] < cfg.min_brightness),
        (reasons.OVEREXPOSED, metrics["brightness"] > cfg.max_brightness),
        (reasons.BLURRY, metrics["sharpness"] < cfg.min_sharpness),
        (reasons.EXTREME_POSE, abs(metrics["yaw_deg"]) > cfg.max_yaw_deg
         or abs(metrics["pitch_deg"]) > cfg.max_pitch_deg),
    ]
    return next((code for code, failed in checks if failed), None)
