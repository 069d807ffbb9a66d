"""Face step on real photos: detection, mesh, shot segmentation, smooth crop boxes and cropping."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from matplotlib import cbook
from PIL import Image

from curation.faces import segment_faces
from foundation.faces import FaceAnalyzer, FacesConfig, FrameFaces, box_iou, crop_boxes, crop_frame, landmarks_to_crop

W, H = 480, 360  # analysis frame size used throughout
FPS = 25


def _letterbox(img: np.ndarray, width: int = W, height: int = H) -> np.ndarray:
    """Scale to fit and centre on grey; returns the frame (the maps below undo it)."""
    scale = min(width / img.shape[1], height / img.shape[0])
    small = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    out = np.full((height, width, 3), 127, np.uint8)
    y0, x0 = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
    out[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
    return out


def _shift(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REPLICATE)


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    insightface_dir = Path(importlib.util.find_spec("insightface").submodule_search_locations[0])
    group = cv2.cvtColor(cv2.imread(str(insightface_dir / "data/images/t1.jpg")), cv2.COLOR_BGR2RGB)
    grace = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    return {"astronaut": skimage.data.astronaut(), "grace": grace, "group": group,
            "coffee": skimage.data.coffee()}


@pytest.fixture(scope="module")
def frames(images) -> dict[str, np.ndarray]:
    return {name: _letterbox(img) for name, img in images.items()}


@pytest.fixture(scope="module")
def analyzer():
    with FaceAnalyzer(FacesConfig()) as fa:
        yield fa


def _analyze(analyzer: FaceAnalyzer, frames: list[np.ndarray]) -> list[FrameFaces]:
    analyzer.reset()
    return [analyzer.analyze(f) for f in frames]


def test_astronaut_face_box_and_mesh(analyzer, images):
    faces = _analyze(analyzer, [images["astronaut"]])[0]
    assert faces.boxes.shape == (1, 4) and faces.boxes.dtype == np.float32
    x0, y0, x1, y1 = faces.boxes[0]
    assert 0.30 < x0 < x1 < 0.60 and 0.08 < y0 < y1 < 0.45
    assert 0.5 < faces.scores[0] <= 1
    assert faces.landmarks.shape == (478, 3) and faces.landmarks.dtype == np.float32
    # The mesh lies on the detected face: its nose tip (landmark 1) inside the box.
    nose = faces.landmarks[1]
    assert x0 < nose[0] < x1 and y0 < nose[1] < y1


def test_no_face_and_group(analyzer, images):
    coffee = _analyze(analyzer, [images["coffee"]])[0]
    assert coffee.boxes.shape == (0, 4) and coffee.landmarks is None
    group = _analyze(analyzer, [images["group"]])[0]
    assert len(group.boxes) >= 2
    areas = (group.boxes[:, 2] - group.boxes[:, 0]) * (group.boxes[:, 3] - group.boxes[:, 1])
    assert np.all(np.diff(areas) <= 0)  # largest first


@pytest.mark.parametrize("height_share", [0.15, 0.75])
def test_small_and_large_faces(analyzer, images, height_share):
    # Astronaut's face is about 104 px of her 512 px photo; scale it to the wanted share of H.
    img = images["astronaut"]
    scale = height_share * H / 104
    big = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    centre = np.array([226, 120]) * scale  # face centre in the scaled photo
    frame = _shift(big, W / 2 - centre[0], H / 2 - centre[1])[:H, :W]
    frame = np.ascontiguousarray(cv2.copyMakeBorder(frame, 0, H - frame.shape[0], 0, W - frame.shape[1],
                                                    cv2.BORDER_REPLICATE))
    faces = _analyze(analyzer, [frame] * 3)[-1]
    assert len(faces.boxes) >= 1 and faces.landmarks is not None
    box = faces.boxes[0]
    assert abs((box[1] + box[3]) / 2 - 0.5) < 0.1
    assert (box[3] - box[1]) == pytest.approx(height_share, rel=0.35)


def test_segment_real_sequence(analyzer, frames):
    astro = [_shift(frames["astronaut"], 2 * i, i) for i in range(30)]
    astro[10] = astro[11] = frames["coffee"]  # a two-frame detection gap inside the track
    sequence = (astro + [frames["coffee"]] * 10 + [frames["group"]] * 10
                + [_shift(frames["grace"], -i, 0) for i in range(20)])
    faces = _analyze(analyzer, sequence)
    spans = segment_faces(faces, start=100, cfg=FacesConfig(), fps=FPS)
    assert [(s.start, s.end, s.status) for s in spans] == [
        (100, 130, "ok"), (130, 140, "no_face"), (140, 150, "multiple_faces"), (150, 170, "ok")]
    ok = spans[0]
    assert ok.boxes.shape == (30, 4) and ok.landmarks.shape == (30, 478, 3) and ok.scores.shape == (30,)
    assert np.isfinite(ok.boxes).all()
    # The gap frames carry interpolated boxes but no landmarks.
    assert np.isnan(ok.landmarks[10:12]).all() and np.isfinite(np.delete(ok.landmarks, [10, 11], 0)).all()
    assert np.allclose(ok.boxes[10:12], (ok.boxes[9:11] + ok.boxes[11:13]) / 2, atol=0.01)
    # The face follows the 2 px/frame translation to the right.
    moved = (ok.boxes[-1, 0] - ok.boxes[0, 0]) * W
    assert moved == pytest.approx(58, abs=8)


def test_detect_every_follows_the_mesh(frames):
    sequence = [_shift(frames["astronaut"], 3 * i, 0) for i in range(12)]
    results = {}
    for every in (1, 4):
        with FaceAnalyzer(FacesConfig(detect_every=every)) as fa:
            results[every] = np.array([fa.analyze(f).boxes[0] for f in sequence])
    assert np.abs(results[4] - results[1]).max() < 0.02
    assert (results[4][-1, 0] - results[4][0, 0]) * W == pytest.approx(33, abs=6)  # boxes moved on skipped frames


def _faces(*boxes: list[float]) -> FrameFaces:
    arr = np.array(boxes, np.float32).reshape(-1, 4)
    lms = np.zeros((478, 3), np.float32) if len(arr) else None
    return FrameFaces(arr, np.full(len(arr), 0.9, np.float32), lms)


def _spans(frames: list[FrameFaces], **cfg) -> list[tuple[int, int, str]]:
    return [(s.start, s.end, s.status) for s in segment_faces(frames, 0, FacesConfig(**cfg), FPS)]


def test_segment_rules_on_plain_data():
    face, other = [0.4, 0.2, 0.6, 0.5], [0.0, 0.0, 0.2, 0.3]
    small_second = [0.8, 0.8, 0.85, 0.85]
    # A 2-frame gap is bridged, a 3-frame gap splits the track.
    seq = [_faces(face)] * 5 + [_faces()] * 2 + [_faces(face)] * 5 + [_faces()] * 3 + [_faces(face)] * 4
    assert _spans(seq) == [(0, 12, "ok"), (12, 15, "no_face"), (15, 19, "ok")]
    # A jump to another face splits; a small extra face does not count; a big one does.
    seq = [_faces(face)] * 3 + [_faces(other, small_second)] * 3 + [_faces(other, face)] * 2
    assert _spans(seq) == [(0, 3, "ok"), (3, 6, "ok"), (6, 8, "multiple_faces")]
    # A gap next to a face change is not bridged; leading/trailing gaps stay no_face.
    seq = [_faces()] + [_faces(face)] * 2 + [_faces()] + [_faces(other)] * 2 + [_faces()]
    assert _spans(seq) == [(0, 1, "no_face"), (1, 3, "ok"), (3, 4, "no_face"), (4, 6, "ok"), (6, 7, "no_face")]
    assert segment_faces([], 7, FacesConfig(), FPS) == []


def test_crop_boxes_smooth_and_centred():
    rng = np.random.default_rng(0)
    n, width, height = 75, 1280, 720
    t = np.arange(n)
    cx, cy, size = 600 + 2 * t, 300 + 0 * t, 200.0  # a face drifting right, 200 px
    true = np.stack([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2], 1)
    noisy = true + rng.normal(0, 4, true.shape)
    boxes = crop_boxes(noisy / [width, height, width, height], width, height, FacesConfig(), FPS)
    assert boxes.shape == (n, 3) and boxes.dtype == np.float32
    cfg = FacesConfig()
    assert np.all(boxes[:, 2] == boxes[0, 2]) and boxes[0, 2] == pytest.approx(cfg.crop_scale * size, rel=0.05)
    centre = boxes[:, :2] + boxes[:, 2:] / 2
    raw_centre = (noisy[:, :2] + noisy[:, 2:]) / 2
    assert np.abs(np.diff(centre, axis=0) - [2, 0]).max() < 1.5  # smooth: only the true drift remains
    assert np.abs(np.diff(raw_centre, axis=0) - [2, 0]).max() > 4  # while the input jitters
    expected = np.stack([cx, cy + cfg.crop_shift_down * size], 1)
    error = np.linalg.norm(centre - expected, axis=1)
    assert error.mean() < 2 and error.max() < 6  # within a few px of a 200 px face, edges included


def test_crop_boxes_stay_square_at_frame_edges():
    width, height = 640, 360
    near_left = np.tile([[0.0, 0.3, 0.15, 0.5]], (10, 1))
    boxes = crop_boxes(near_left, width, height, FacesConfig(), FPS)
    assert np.allclose(boxes[:, :2], [0, boxes[0, 1]]) and 0 <= boxes[0, 1] <= height - boxes[0, 2]
    huge = np.tile([[0.3, 0.1, 0.7, 0.9]], (10, 1))  # 288 px face: 634 px crop, taller than the frame
    boxes = crop_boxes(huge, width, height, FacesConfig(), FPS)
    side = boxes[0, 2]
    assert side > height and height - side <= boxes[0, 1] <= 0 and 0 <= boxes[0, 0] <= width - side
    for n in (1, 2, 4):  # spans shorter than the smoothing window still get one box per frame
        assert crop_boxes(huge[:n], width, height, FacesConfig(), FPS).shape == (n, 3)


def test_crop_frame_pads_by_replication():
    frame = np.tile(np.arange(100, dtype=np.uint8)[None, :, None], (80, 1, 3))  # x gradient
    inside = crop_frame(frame, np.array([10, 10, 50]), 50)
    assert inside.shape == (50, 50, 3) and np.array_equal(inside, frame[10:60, 10:60])
    padded = crop_frame(frame, np.array([-20, 50, 60]), 60)
    assert padded.shape == (60, 60, 3)
    assert np.all(padded[:, :20] == 0) and np.array_equal(padded[:30, 20:], frame[50:80, :40])
    assert np.array_equal(padded[30:], np.repeat(padded[29:30], 30, 0))  # bottom rows replicate the last
    assert crop_frame(frame, np.array([90.0, -5.0, 40.0]), 64).shape == (64, 64, 3)


def test_crop_around_real_face(analyzer, images):
    img = images["astronaut"]
    faces = _analyze(analyzer, [img])[0]
    box = crop_boxes(faces.boxes[:1], 512, 512, FacesConfig(), FPS)
    crop = crop_frame(img, box[0], 256)
    again = _analyze(analyzer, [crop])[0]
    # The face sits in the middle of the crop, a bit above centre (room for the shoulders).
    fx, fy = (again.boxes[0, 0] + again.boxes[0, 2]) / 2, (again.boxes[0, 1] + again.boxes[0, 3]) / 2
    assert abs(fx - 0.5) < 0.08 and 0.35 < fy < 0.5
    assert box_iou(again.boxes[0], np.array([0.27, 0.23, 0.73, 0.69])) > 0.5  # face ~1/2.2 of the crop
    points = landmarks_to_crop(faces.landmarks[None], box, 512, 512, 256)
    assert points.shape == (1, 478, 2)
    mesh_again = again.landmarks[:, :2] * 256
    assert np.median(np.linalg.norm(points[0] - mesh_again, axis=1)) < 4  # same points, same place
