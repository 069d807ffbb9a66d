"""Face step: split a shot's per-frame faces (foundation.faces.FaceAnalyzer) into single-face spans.

Every frame of a shot lands in one span: `ok` (one dominant face, tracked), `no_face` or
`multiple_faces`; crop boxes for `ok` spans come from foundation.faces.crop_boxes.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from foundation.faces import N_LANDMARKS, FacesConfig, FrameFaces, box_areas, box_iou

log = logging.getLogger(__name__)

Status = Literal["ok", "no_face", "multiple_faces"]


@dataclass
class FaceSpan:
    """A run of frames [start, end) of one shot that share a status (and, for `ok`, one face track)."""

    start: int
    end: int
    status: Status
    boxes: np.ndarray  # (n, 4) main-face box per frame; gaps interpolated in ok spans, NaN where absent
    landmarks: np.ndarray  # (n, 478, 3) float32, NaN rows where the mesh was missing
    scores: np.ndarray  # (n,) main-face detection score, NaN where absent


def _frame_status(faces: FrameFaces, cfg: FacesConfig) -> Status:
    if len(faces.boxes) == 0:
        return "no_face"
    areas = box_areas(faces.boxes)
    if len(areas) > 1 and areas[1] >= cfg.second_face_ratio * areas[0]:
        return "multiple_faces"
    return "ok"


def _frame_labels(frames: Sequence[FrameFaces], cfg: FacesConfig) -> list[tuple[Status, int]]:
    """(status, track id) per frame; short no-face gaps inside one ok track take the track's label."""
    labels: list[tuple[Status, int]] = [(_frame_status(f, cfg), -1) for f in frames]
    track, last_ok = -1, None
    for i, (status, _) in enumerate(labels):
        if status != "ok":
            continue
        gap = range(last_ok + 1, i) if last_ok is not None else range(0)
        same_track = (
            last_ok is not None
            and len(gap) <= cfg.max_gap_frames
            and all(labels[j][0] == "no_face" for j in gap)
            and box_iou(frames[last_ok].boxes[0], frames[i].boxes[0]) >= cfg.track_iou
        )
        if same_track:
            for j in gap:
                labels[j] = ("ok", track)
        else:
            track += 1
        labels[i] = ("ok", track)
        last_ok = i
    return labels


def _span(frames: Sequence[FrameFaces], lo: int, hi: int, start: int, status: Status) -> FaceSpan:
    n = hi - lo
    boxes = np.full((n, 4), np.nan, np.float32)
    landmarks = np.full((n, N_LANDMARKS, 3), np.nan, np.float32)
    scores = np.full(n, np.nan, np.float32)
    for k, faces in enumerate(frames[lo:hi]):
        if len(faces.boxes):
            boxes[k], scores[k] = faces.boxes[0], faces.scores[0]
        if faces.landmarks is not None:
            landmarks[k] = faces.landmarks
    if status == "ok":
        have = ~np.isnan(boxes[:, 0])
        idx = np.arange(n)
        for c in range(4):
            boxes[:, c] = np.interp(idx, idx[have], boxes[have, c])
    return FaceSpan(start + lo, start + hi, status, boxes, landmarks, scores)


def segment_faces(frames: Sequence[FrameFaces], start: int, cfg: FacesConfig, fps: int) -> list[FaceSpan]:
    """Partition one shot (frames with absolute indices start .. start+len-1) into spans.

    Every frame lands in exactly one span. An `ok` span follows one dominant face whose boxes
    overlap by IoU >= track_iou from frame to frame; a jump to another face starts a new span, and
    no-face gaps of at most max_gap_frames inside a track are bridged by interpolating the box.
    """
    labels = _frame_labels(frames, cfg)
    spans: list[FaceSpan] = []
    lo = 0
    for i in range(1, len(frames) + 1):
        if i == len(frames) or labels[i] != labels[lo]:
            spans.append(_span(frames, lo, i, start, labels[lo][0]))
            lo = i
    log.debug("shot at frame %d: %s", start,
              ", ".join(f"{s.status} {(s.end - s.start) / fps:.2f}s" for s in spans))
    return spans
