"""The reference image for generation, cropped exactly like curation crops its training clips.

Curation's face analyser (mediapipe face detection + 478-point face mesh) finds the main face; the
square crop is `crop_scale` x face size, moved down by `crop_shift_down` x face size, padded by edge
replication, resized to the model's resolution; the landmarks follow into crop pixels. Without a face
the image is centre-cropped (with a warning) and the masks fall back to their no-face definition.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from foundation.faces import FaceAnalyzer, FacesConfig, crop_boxes, crop_frame, landmarks_to_crop

log = logging.getLogger(__name__)

FPS = 25  # only used by the crop smoothing, which a single frame does not need


@dataclass
class Portrait:
    image: np.ndarray  # (S, S, 3) uint8 RGB
    landmarks: np.ndarray | None  # (478, 2) float32 pixels in `image`, None when no face was found


def prepare_portrait(image_rgb: np.ndarray, size: int, faces: FacesConfig | None = None) -> Portrait:
    cfg = faces or FacesConfig()
    height, width = image_rgb.shape[:2]
    with FaceAnalyzer(cfg) as analyzer:
        found = analyzer.analyze(image_rgb)
    if len(found.boxes) == 0 or found.landmarks is None:
        log.warning("no face found in the reference image; using a centre crop and whole-image masks")
        side = min(height, width)
        box = np.array([(width - side) / 2, (height - side) / 2, side], np.float32)
        return Portrait(crop_frame(image_rgb, box, size), None)
    box = crop_boxes(found.boxes[:1], width, height, cfg, FPS)
    landmarks = landmarks_to_crop(found.landmarks[None], box, width, height, size)[0]
    return Portrait(crop_frame(image_rgb, box[0], size), landmarks)
