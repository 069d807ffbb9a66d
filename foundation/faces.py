"""Face analysis and crop geometry shared by curation (video) and generation (one portrait): mediapipe
detection + 478-point face mesh per frame, smooth square crop boxes, crops and landmarks in crop pixels.

Coordinates handed between steps are normalised to [0, 1] of the frame (x by width, y by height),
so the same boxes apply to the analysis frames and to the full-resolution source.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from foundation.config import opt

log = logging.getLogger(__name__)

N_LANDMARKS = 478
# The face mesh runs on a square crop around the main face: its built-in detector is a short-range
# model that misses faces smaller than about 30% of its input, so we hand it the face at ~50%.
MESH_CROP_SCALE = 2.0
MESH_INPUT_SIZE = 256
# A mesh face belongs to the detected main face when their boxes overlap at least this much.
MESH_MATCH_IOU = 0.3
# Mesh points that do not move when the mouth opens (forehead, temples, eye corners, nose): between
# detections the main box follows their extent, so it does not breathe with the jaw.
RIGID_LANDMARKS = [10, 234, 454, 33, 263, 168, 1]

@dataclass
class FacesConfig:
    detect_every: int = opt(5, "run face detection every N frames; between them the main face's box follows the mesh (landmarks run on every frame)", low=1)
    min_detection_confidence: float = opt(0.5, "mediapipe face detection threshold", low=0, high=1)
    max_faces: int = opt(1, "faces the face mesh looks for inside the main face's crop (extra people are found by the detector); above 1 it re-detects on every frame", low=1)
    second_face_ratio: float = opt(0.3, "a second face whose area exceeds this fraction of the main face's makes the frame `multiple_faces`", low=0, high=1)
    track_iou: float = opt(0.3, "IoU above which boxes in consecutive frames are the same face track", low=0, high=1)
    max_gap_frames: int = opt(2, "frames a track may miss before it ends (filled by interpolation)", low=0)
    crop_scale: float = opt(2.2, "square crop side = this x face size (keeps head and shoulders)", low=1)
    crop_shift_down: float = opt(0.1, "crop centre moved down by this x face size (room for the shoulders)", low=-1, high=1)
    smooth_window_s: float = opt(0.6, "moving-average window for the crop box, in seconds (removes jitter)", low=0)
    output_size: int = opt(512, "side of the square output clip in pixels", low=64)


@dataclass
class FrameFaces:
    """Faces found in one analysis frame."""

    boxes: np.ndarray  # (n, 4) float32 x0, y0, x1, y1 normalised, largest area first
    scores: np.ndarray  # (n,) detection confidence
    landmarks: np.ndarray | None  # (478, 3) float32 normalised x, y, z of boxes[0]'s face, or None


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two x0, y0, x1, y1 boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def box_areas(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _empty_faces() -> FrameFaces:
    return FrameFaces(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), None)


class FaceAnalyzer:
    """Owns the mediapipe graphs for one stream of frames; call `reset()` at every shot cut.

    Detection (full-range model: it finds faces from about 12% to over 80% of the frame height)
    runs every `detect_every` frames, and whenever the mesh has lost the face. The mesh runs on
    every frame, in tracking mode, on a crop around the last detected main-face box: a crop that
    stays put between detections gives steadier lip landmarks than one that follows the mesh's own
    output. Between detections the main face's box follows the rigid part of the mesh, and the
    other boxes are carried over.
    """

    def __init__(self, cfg: FacesConfig) -> None:
        import mediapipe as mp  # here, not at the top: configs import FacesConfig, and `--help` should not wait ~1.5 s

        self.cfg = cfg
        self._detector = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=cfg.min_detection_confidence)
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False, max_num_faces=cfg.max_faces, refine_landmarks=True)
        self._since_detect = 0
        self._last = _empty_faces()
        self._anchor: np.ndarray | None = None  # main detection box in units of its rigid mesh box
        self._detected: np.ndarray | None = None  # main box of the last detection: places the mesh crop

    def __enter__(self) -> FaceAnalyzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._detector.close()
        self._mesh.close()

    def reset(self) -> None:
        """Forget tracking state so nothing carries over a shot cut."""
        self._mesh.reset()
        self._since_detect = 0
        self._last = _empty_faces()
        self._anchor = None
        self._detected = None

    def analyze(self, frame: np.ndarray) -> FrameFaces:
        """Faces of one RGB uint8 frame (consecutive frames of one shot, in order)."""
        due = self._since_detect % max(1, self.cfg.detect_every) == 0 or self._last.landmarks is None
        self._since_detect += 1
        followed = None if due else self._follow(frame)
        if followed is not None:
            self._last = followed
            return followed
        # On schedule, or as soon as the track is lost (no mesh on the last frame or on this one).
        self._since_detect = 1
        boxes, scores = self._detect(frame)
        landmarks = self._mesh_landmarks(frame, boxes[0]) if len(boxes) else None
        self._anchor = None if landmarks is None else _relative_box(boxes[0], _rigid_box(landmarks))
        self._detected = boxes[0] if len(boxes) else None
        self._last = FrameFaces(boxes, scores, landmarks) if len(boxes) else _empty_faces()
        return self._last

    def detect(self, frame: np.ndarray) -> np.ndarray:
        """(n, 4) face boxes of one RGB frame on its own, largest first: detection only (no mesh, no
        tracking state touched), for a quick look at a frame out of sequence."""
        return self._detect(frame)[0]

    def _follow(self, frame: np.ndarray) -> FrameFaces | None:
        """The last frame's faces, the main box moved with the mesh (keeping its place relative to the
        mesh's rigid points); None when the mesh loses the face."""
        landmarks = self._mesh_landmarks(frame, self._detected)
        if landmarks is None or self._anchor is None:
            return None
        boxes = self._last.boxes.copy()
        boxes[0] = np.clip(_absolute_box(self._anchor, _rigid_box(landmarks)), 0.0, 1.0)
        return FrameFaces(boxes, self._last.scores.copy(), landmarks)

    def _detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        result = self._detector.process(frame)
        boxes, scores = [], []
        for det in result.detections or []:
            rel = det.location_data.relative_bounding_box
            box = np.clip([rel.xmin, rel.ymin, rel.xmin + rel.width, rel.ymin + rel.height], 0.0, 1.0)
            if box[2] > box[0] and box[3] > box[1]:
                boxes.append(box)
                scores.append(det.score[0])
        if not boxes:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        boxes_arr = np.asarray(boxes, np.float32)
        order = np.argsort(-box_areas(boxes_arr), kind="stable")
        return boxes_arr[order], np.asarray(scores, np.float32)[order]

    def _mesh_landmarks(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        height, width = frame.shape[:2]
        size = max((box[2] - box[0]) * width, (box[3] - box[1]) * height)
        side = MESH_CROP_SCALE * size
        x0 = (box[0] + box[2]) / 2 * width - side / 2
        y0 = (box[1] + box[3]) / 2 * height - side / 2
        crop_box = np.array([x0, y0, side], np.float32)
        result = self._mesh.process(crop_frame(frame, crop_box, MESH_INPUT_SIZE))
        best, best_iou = None, MESH_MATCH_IOU
        found = result.multi_face_landmarks or []
        for face in found:
            points = np.array([(p.x, p.y, p.z) for p in face.landmark], np.float32)
            points = _crop_to_frame(points, crop_box, width, height)
            iou = box_iou(_landmark_box(points), box)
            if iou >= best_iou:
                best, best_iou = points, iou
        if found and best is None:
            self._mesh.reset()  # it tracks some other face: let it detect afresh on the next frame
        return best


def _crop_to_frame(points: np.ndarray, crop_box: np.ndarray, width: int, height: int) -> np.ndarray:
    """Crop-normalised mesh points to frame-normalised ones (z stays in units of the frame width)."""
    x0, y0, side = (float(v) for v in crop_box)
    out = np.empty_like(points)
    out[:, 0] = (x0 + points[:, 0] * side) / width
    out[:, 1] = (y0 + points[:, 1] * side) / height
    out[:, 2] = points[:, 2] * side / width
    return out


def _landmark_box(landmarks: np.ndarray) -> np.ndarray:
    return np.array([*landmarks[:, :2].min(0), *landmarks[:, :2].max(0)], np.float32)


def _rigid_box(landmarks: np.ndarray) -> np.ndarray:
    return _landmark_box(landmarks[RIGID_LANDMARKS])


def _relative_box(box: np.ndarray, ref: np.ndarray) -> np.ndarray:
    size = np.array([ref[2] - ref[0], ref[3] - ref[1]] * 2)
    return (box - np.array([ref[0], ref[1]] * 2)) / size


def _absolute_box(rel: np.ndarray, ref: np.ndarray) -> np.ndarray:
    size = np.array([ref[2] - ref[0], ref[3] - ref[1]] * 2)
    return (rel * size + np.array([ref[0], ref[1]] * 2)).astype(np.float32)


def crop_boxes(boxes: np.ndarray, width: int, height: int, cfg: FacesConfig, fps: int) -> np.ndarray:
    """Square crop per frame, (n, 3) float32 x0, y0, side in frame pixels, for one ok span (curation:
    full-resolution display pixels, upright and square, see curation.media).

    The side is crop_scale x the span's median face size (max of box width and height in pixels):
    one side per span means no zoom jitter. The centre, moved down by crop_shift_down x face size,
    is a centred moving average over smooth_window_s (see `_smooth`). A square that overflows
    the frame is shifted inside; if it is larger than the frame it stays centred on the face as
    far as possible and `crop_frame` pads it by edge replication.
    """
    boxes = np.asarray(boxes, np.float64)
    if not np.isfinite(boxes).all():
        raise ValueError("crop_boxes needs finite boxes (interpolate gaps first)")
    px = boxes * np.array([width, height, width, height])
    face = np.maximum(px[:, 2] - px[:, 0], px[:, 3] - px[:, 1])
    side = cfg.crop_scale * float(np.median(face))
    centre = np.stack([(px[:, 0] + px[:, 2]) / 2, (px[:, 1] + px[:, 3]) / 2 + cfg.crop_shift_down * face], 1)
    centre = _smooth(centre, round(cfg.smooth_window_s * fps))
    corner = centre - side / 2
    for axis, extent in enumerate((width, height)):
        lo, hi = sorted((0.0, extent - side))
        corner[:, axis] = np.clip(corner[:, axis], lo, hi)
    return np.column_stack([corner, np.full(len(corner), side)]).astype(np.float32)


def outside_share(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Per square x0, y0, side (pixels), the share of its area outside the width x height frame:
    what `crop_frame` invents by edge replication."""
    x0, y0, side = np.asarray(boxes, np.float64).reshape(-1, 3).T
    inside_x = np.clip(np.minimum(x0 + side, width) - np.maximum(x0, 0.0), 0.0, None)
    inside_y = np.clip(np.minimum(y0 + side, height) - np.maximum(y0, 0.0), 0.0, None)
    return 1.0 - inside_x * inside_y / np.maximum(side, 1e-9) ** 2


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along axis 0 over an odd window (capped at the series length).

    A first-order Savitzky-Golay filter is exactly that moving average inside the series; at the
    ends it evaluates a line fitted to the first/last full window, so the edges are as smooth as
    the middle and a drifting face is not pulled back (what mirror padding would do).
    """
    window = min(window + 1 - window % 2, len(values) - 1 + len(values) % 2)
    if window < 3:
        return values
    from scipy.signal import savgol_filter  # scipy.signal takes ~0.8 s to import; only tracking needs it

    return savgol_filter(values, window, polyorder=1, axis=0, mode="interp")


def _pixel_box(box: np.ndarray) -> tuple[int, int, int]:
    """Integer x0, y0, side shared by crop_frame and landmarks_to_crop so they agree exactly."""
    side = max(1, int(round(float(box[2]))))
    return int(round(float(box[0]))), int(round(float(box[1]))), side


def crop_frame(frame: np.ndarray, box: np.ndarray, out_size: int) -> np.ndarray:
    """Cut the square x0, y0, side (pixels) out of the frame, padding outside it by edge
    replication, and resize it to out_size x out_size."""
    height, width = frame.shape[:2]
    x0, y0, side = _pixel_box(box)
    # Clamp the readable part into the frame; everything else is replicated border.
    cx0, cy0 = min(max(x0, 0), width - 1), min(max(y0, 0), height - 1)
    cx1, cy1 = max(min(x0 + side, width), cx0 + 1), max(min(y0 + side, height), cy0 + 1)
    region = frame[cy0:cy1, cx0:cx1]
    left, top = cx0 - x0, cy0 - y0
    right, bottom = side - left - region.shape[1], side - top - region.shape[0]
    if left or top or right or bottom:
        region = cv2.copyMakeBorder(region, max(top, 0), max(bottom, 0), max(left, 0), max(right, 0),
                                    cv2.BORDER_REPLICATE)
        # A square wholly outside the frame asks for negative padding on one side: trim it.
        region = region[max(-top, 0):, max(-left, 0):][:side, :side]
    return _resize_square(region, out_size)


def _resize_square(region: np.ndarray, out_size: int) -> np.ndarray:
    """INTER_AREA resize, or, for shrinking by less than 3x, the same result at about half the cost.

    INTER_AREA is slow for fractional factors and fast for exact halving, so shrink via twice the
    output size: bilinear there (itself a shrink by under 1.5x, or a supersampling), then halve.
    That is within a few grey levels of INTER_AREA (mean difference about 0.1).
    """
    if out_size < region.shape[0] < 3 * out_size:
        region = cv2.resize(region, (2 * out_size, 2 * out_size), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(region, (out_size, out_size), interpolation=cv2.INTER_AREA)


def landmarks_to_crop(landmarks_norm: np.ndarray, boxes: np.ndarray, width: int, height: int,
                      out_size: int) -> np.ndarray:
    """Normalised landmarks (n, 478, 3) to pixel x, y (n, 478, 2) in the out_size crops of `boxes`."""
    pixel = np.array([_pixel_box(b) for b in boxes], np.float32).reshape(-1, 3)
    scale = out_size / pixel[:, 2]
    x = (landmarks_norm[..., 0] * width - pixel[:, None, 0]) * scale[:, None]
    y = (landmarks_norm[..., 1] * height - pixel[:, None, 1]) * scale[:, None]
    return np.stack([x, y], -1).astype(np.float32)
