"""Face-region and audio-attention masks from face-mesh landmarks: one definition for training
(a clip's per-frame landmarks from the shards) and generation (the reference image's landmarks).

Definition (fixes the reference, which unions over a whole video in training but uses one image,
expanded more, at inference):
- Boxes: the bounding box of the face-oval (36 ids) and outer-lip (20 ids) landmarks over ALL
  frames given (for one image: that image), then scaled about its centre by FACE_EXPAND / LIP_EXPAND
  and clipped to the image. Training passes the landmarks of the clip's target frames.
- face_region: the filled face box at image resolution, values {0, 1}: the face locator's input.
- regions (3, h, w) at any resolution, channels (pose, face, lip) as the audio branches:
  lip = blur(lip box), face = max(blur(face box) - lip, 0), pose = 1 - blur(face box), where blur is
  a Gaussian with sigma FACE_BLUR / LIP_BLUR times the mask side, then min-max normalised
  (the reference's 51/31-pixel kernels on 64x64 masks, made resolution independent).
- No landmarks (no face found): face_region covers the whole image, regions = (0, 1, 0).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FACE_OVAL_IDS = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
                 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
LIP_IDS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
FACE_EXPAND = 1.2
LIP_EXPAND = 2.0
FACE_BLUR = 8.0 / 64.0  # OpenCV's sigma for a 51-pixel kernel, on a 64-pixel mask
LIP_BLUR = 5.0 / 64.0  # ... for a 31-pixel kernel


@dataclass
class RegionMasks:
    face_region: np.ndarray  # (H, W) float32 in {0, 1}
    regions: np.ndarray  # (3, h, w) float32 in [0, 1]: pose, face, lip


def _box(points: np.ndarray, expand: float, image_hw: tuple[int, int]) -> np.ndarray:
    """Bounding box x0, y0, x1, y1 of (..., 2) points, scaled about its centre, clipped to the image."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    centre, half = (lo + hi) / 2, (hi - lo) * expand / 2
    height, width = image_hw
    return np.clip(np.concatenate([centre - half, centre + half]), 0, [width, height, width, height])


def region_boxes(landmarks: np.ndarray | None, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray] | None:
    """Face and lip boxes (pixels) over all frames of (478, 2) or (frames, 478, 2) pixel landmarks.

    Frames with missing (NaN) landmarks are skipped; None when no frame has any.
    """
    if landmarks is None:
        return None
    points = np.asarray(landmarks, np.float64).reshape(-1, *np.shape(landmarks)[-2:])[..., :2]
    points = points[np.isfinite(points).all(axis=(1, 2))]
    if len(points) == 0:
        return None
    face = _box(points[:, list(FACE_OVAL_IDS)].reshape(-1, 2), FACE_EXPAND, image_hw)
    lip = _box(points[:, list(LIP_IDS)].reshape(-1, 2), LIP_EXPAND, image_hw)
    return face, lip


def _fill(box: np.ndarray, image_hw: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    sy, sx = out_hw[0] / image_hw[0], out_hw[1] / image_hw[1]
    x0, x1 = (int(round(v * sx)) for v in (box[0], box[2]))
    y0, y1 = (int(round(v * sy)) for v in (box[1], box[3]))
    mask = np.zeros(out_hw, np.float32)
    mask[y0:y1, x0:x1] = 1.0
    return mask


def _soft(box: np.ndarray, image_hw: tuple[int, int], out_hw: tuple[int, int], sigma: float) -> np.ndarray:
    blurred = cv2.GaussianBlur(_fill(box, image_hw, out_hw), (0, 0), sigmaX=sigma * out_hw[1], sigmaY=sigma * out_hw[0])
    lo, hi = float(blurred.min()), float(blurred.max())
    return (blurred - lo) / (hi - lo) if hi > lo else np.clip(blurred, 0.0, 1.0)


def region_masks(landmarks: np.ndarray | None, image_hw: tuple[int, int], regions_hw: tuple[int, int]) -> RegionMasks:
    """Masks for an image (or clip) of size image_hw; `regions` at regions_hw (e.g. the latent size)."""
    boxes = region_boxes(landmarks, image_hw)
    if boxes is None:
        ones = np.ones(regions_hw, np.float32)
        return RegionMasks(np.ones(image_hw, np.float32), np.stack([0 * ones, ones, 0 * ones]))
    face_box, lip_box = boxes
    face = _soft(face_box, image_hw, regions_hw, FACE_BLUR)
    lip = _soft(lip_box, image_hw, regions_hw, LIP_BLUR)
    regions = np.stack([1.0 - face, np.clip(face - lip, 0.0, 1.0), lip]).astype(np.float32)
    return RegionMasks(_fill(face_box, image_hw, image_hw), regions)
