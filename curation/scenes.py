"""Shot cuts with PySceneDetect, fed frame by frame from the single analysis decode.

Frames are shrunk first as PySceneDetect's own SceneManager does by default (to about 256 px wide,
linear interpolation): its detectors compare mean colour differences, which do not need more pixels,
and at the analysis size they would cost more than the face step's detection.
"""
from __future__ import annotations

import cv2
import numpy as np
from scenedetect import AdaptiveDetector, ContentDetector, FrameTimecode
from scenedetect.scene_manager import compute_downscale_factor

from curation.config import ScenesConfig


class ShotDetector:
    """Streams frames into a PySceneDetect detector and returns the shots as [start, end) ranges."""

    def __init__(self, cfg: ScenesConfig, fps: int) -> None:
        self.fps = float(fps)
        if cfg.detector == "adaptive":
            self.detector = AdaptiveDetector(
                adaptive_threshold=cfg.adaptive_threshold, min_scene_len=cfg.min_scene_len_frames
            )
        else:
            self.detector = ContentDetector(threshold=cfg.content_threshold, min_scene_len=cfg.min_scene_len_frames)
        self.cuts: list[int] = []
        self.num_frames = 0

    def feed(self, index: int, frame_rgb: np.ndarray) -> None:
        height, width = frame_rgb.shape[:2]
        factor = compute_downscale_factor(width)
        if factor > 1:
            size = (max(1, round(width / factor)), max(1, round(height / factor)))
            frame_rgb = cv2.resize(frame_rgb, size, interpolation=cv2.INTER_LINEAR)
        # PySceneDetect expects OpenCV's BGR order.
        cuts = self.detector.process_frame(FrameTimecode(index, fps=self.fps), frame_rgb[..., ::-1])
        self.cuts.extend(c.frame_num for c in cuts)
        self.num_frames = index + 1

    def shots(self) -> list[tuple[int, int]]:
        end = FrameTimecode(self.num_frames, fps=self.fps)
        cuts = sorted({*self.cuts, *(c.frame_num for c in self.detector.post_process(end))})
        bounds = [0, *(c for c in cuts if 0 < c < self.num_frames), self.num_frames]
        return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]
