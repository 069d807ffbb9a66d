"""Quality step on real faces: sharpness, brightness, head pose, clip medians and verdicts."""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest
import skimage.data
from matplotlib import cbook
from PIL import Image

from curation import reasons
from curation.config import QualityConfig
from foundation.faces import FaceAnalyzer, FacesConfig
from examples.fixtures import load_photo, open_mouth
from curation.quality import clip_metrics, frame_metrics, head_pose, judge


@pytest.fixture(scope="module")
def faces() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, float]]:
    """name -> (image, main box, landmarks, score) for two real frontal portraits."""
    grace = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    out = {}
    with FaceAnalyzer(FacesConfig()) as analyzer:
        for name, img in {"astronaut": skimage.data.astronaut(), "grace": grace}.items():
            analyzer.reset()
            found = analyzer.analyze(img)
            out[name] = (img, found.boxes[0], found.landmarks, float(found.scores[0]))
    return out


def _turn(landmarks: np.ndarray, width: int, height: int, degrees: float) -> np.ndarray:
    """Turn the face about the vertical axis: x is squashed by cos and shifted by depth x sin."""
    points = landmarks.astype(np.float64) * [width, height, width]
    centre = points.mean(0)
    a = math.radians(degrees)
    turned = points.copy()
    turned[:, 0] = centre[0] + (points[:, 0] - centre[0]) * math.cos(a) + (points[:, 2] - centre[2]) * math.sin(a)
    return (turned / [width, height, width]).astype(np.float32)


@pytest.mark.parametrize("name", ["astronaut", "grace"])
def test_frontal_and_turned_pose(faces, name):
    img, box, landmarks, score = faces[name]
    metrics = frame_metrics(img, box, landmarks, score)
    assert abs(metrics["yaw_deg"]) < 15 and abs(metrics["pitch_deg"]) < 15
    assert metrics["det_score"] == pytest.approx(score)
    height, width = img.shape[:2]
    for degrees in (50, -50):
        yaw, _, _ = head_pose(_turn(landmarks, width, height, degrees), width, height)
        assert abs(yaw) > 35 and np.sign(yaw) == np.sign(degrees)


def test_blur_and_darkness_move_their_metrics(faces):
    img, box, landmarks, _ = faces["astronaut"]
    sharp = frame_metrics(img, box, landmarks)
    blurred = frame_metrics(cv2.GaussianBlur(img, (0, 0), 4), box, landmarks)
    dark = frame_metrics((img * 0.2).astype(np.uint8), box, landmarks)
    assert sharp["sharpness"] > 20 * blurred["sharpness"]
    assert sharp["brightness"] > 100 and dark["brightness"] == pytest.approx(0.2 * sharp["brightness"], abs=2)
    assert math.isnan(sharp["det_score"])  # not given
    cfg = QualityConfig()
    assert judge(clip_metrics([sharp], box[None], 512, 512, 1.0), cfg).reason is None
    assert judge(clip_metrics([blurred], box[None], 512, 512, 1.0), cfg).reason == reasons.BLURRY
    assert judge(clip_metrics([dark], box[None], 512, 512, 1.0), cfg).reason == reasons.TOO_DARK


def test_missing_landmarks_and_empty_box(faces):
    img, box, _, _ = faces["astronaut"]
    no_mesh = frame_metrics(img, box, None)
    assert math.isnan(no_mesh["yaw_deg"]) and no_mesh["sharpness"] > 0
    off_frame = frame_metrics(img, np.array([1.2, 0.1, 1.4, 0.3]), None)
    assert math.isnan(off_frame["sharpness"]) and math.isnan(off_frame["brightness"])


def test_clip_metrics_medians(faces):
    img, box, landmarks, score = faces["astronaut"]
    per_frame = [frame_metrics(img, box, landmarks, score), frame_metrics(img, box, None, score),
                 frame_metrics(cv2.GaussianBlur(img, (0, 0), 4), box, landmarks, score)]
    boxes = np.array([[0.1, 0.1, 0.3, 0.2], [0.1, 0.1, 0.2, 0.5], [0.0, 0.0, 0.25, 0.25]])
    clip = clip_metrics(per_frame, boxes, 1280, 720, landmark_presence=2 / 3)
    # face side in source px: max(0.2*1280, 0.1*720)=256, max(128, 288)=288, max(320, 180)=320
    assert clip["face_px"] == pytest.approx(288)
    assert clip["landmark_presence"] == pytest.approx(2 / 3)
    assert clip["yaw_deg"] == pytest.approx(per_frame[0]["yaw_deg"], abs=5)  # median of the 2 with a mesh
    assert clip["sharpness"] == pytest.approx(np.median([m["sharpness"] for m in per_frame]))
    assert set(clip) == {"sharpness", "brightness", "yaw_deg", "pitch_deg", "roll_deg", "det_score", "face_px",
                         "landmark_presence", "yaw_range_deg", "pitch_range_deg", "roll_range_deg",
                         "mouth_open_range"}


GOOD = {"sharpness": 200.0, "brightness": 120.0, "yaw_deg": 5.0, "pitch_deg": -3.0, "det_score": 0.9,
        "face_px": 300.0, "landmark_presence": 1.0, "crop_outside_share": 0.02}


@pytest.mark.parametrize("change, reason", [
    ({"landmark_presence": 0.5}, reasons.NO_FACE),
    ({"face_px": 60.0}, reasons.FACE_TOO_SMALL),
    ({"brightness": 20.0}, reasons.TOO_DARK),
    ({"brightness": 250.0}, reasons.OVEREXPOSED),
    ({"sharpness": 5.0}, reasons.BLURRY),
    ({"yaw_deg": -50.0}, reasons.EXTREME_POSE),
    ({"pitch_deg": 40.0}, reasons.EXTREME_POSE),
    ({"landmark_presence": 0.5, "face_px": 60.0, "sharpness": 5.0}, reasons.NO_FACE),  # first failing wins
    ({"face_px": 60.0, "brightness": 20.0}, reasons.FACE_TOO_SMALL),
    ({"crop_outside_share": 0.2}, reasons.CROP_OFF_FRAME),
    ({"crop_outside_share": 0.2, "face_px": 60.0}, reasons.FACE_TOO_SMALL),
    ({"yaw_deg": float("nan"), "pitch_deg": float("nan")}, None),  # unmeasured pose does not reject
])
def test_judge_default_config(change, reason):
    assert judge({**GOOD, **change}, QualityConfig()).reason == reason


@pytest.mark.parametrize("setting, reason", [
    ({"min_landmark_presence": 1.01}, reasons.NO_FACE),
    ({"min_face_px": 400}, reasons.FACE_TOO_SMALL),
    ({"min_brightness": 150.0}, reasons.TOO_DARK),
    ({"max_brightness": 100.0}, reasons.OVEREXPOSED),
    ({"min_sharpness": 500.0}, reasons.BLURRY),
    ({"max_yaw_deg": 2.0}, reasons.EXTREME_POSE),
    ({"max_crop_outside_share": 0.01}, reasons.CROP_OFF_FRAME),
])
def test_judge_follows_config(setting, reason):
    assert judge(GOOD, dataclasses.replace(QualityConfig(), **setting)).reason == reason


def test_roll_follows_an_in_plane_turn_of_a_real_photo(faces):
    """cv2 turns the image counter-clockwise for a positive angle: the roll reads its negative."""
    img, _, _, _ = faces["astronaut"]
    rolls = {}
    with FaceAnalyzer(FacesConfig()) as analyzer:
        for degrees in (-20, 0, 20):
            analyzer.reset()
            turned = cv2.warpAffine(img, cv2.getRotationMatrix2D((256, 200), degrees, 1.0), (512, 512),
                                    borderMode=cv2.BORDER_REPLICATE)
            found = analyzer.analyze(turned)
            rolls[degrees] = frame_metrics(turned, found.boxes[0], found.landmarks)["roll_deg"]
    assert abs(rolls[0]) < 6
    for degrees in (-20, 20):  # measured: 19.6 and -19.8 relative to the upright photo
        assert rolls[degrees] - rolls[0] == pytest.approx(-degrees, abs=4)


def test_mouth_opening_and_its_range_over_a_clip():
    """The fixtures' real photo with its mouth warped open: the measure grows with the gap, and the
    clip's range spans it."""
    photo = load_photo("astronaut")
    per_frame, boxes = [], []
    with FaceAnalyzer(FacesConfig()) as analyzer:
        for opening in np.linspace(0, 0.75, 16):
            analyzer.reset()
            frame = open_mouth(photo, float(opening))
            found = analyzer.analyze(frame)
            per_frame.append(frame_metrics(frame, found.boxes[0], found.landmarks))
            boxes.append(found.boxes[0])
    mouth = np.array([m["mouth_open"] for m in per_frame])
    assert 0.05 < mouth[0] < 0.16 and mouth[-1] > 2 * mouth[0]  # measured: 0.12 closed, 0.27 open
    assert np.corrcoef(mouth, np.arange(16))[0, 1] > 0.95
    clip = clip_metrics(per_frame, np.array(boxes), 512, 512, 1.0)
    assert clip["mouth_open_range"] == pytest.approx(np.percentile(mouth, 95) - np.percentile(mouth, 5))
    assert clip["mouth_open_range"] > 0.1
    assert clip["yaw_range_deg"] < 5 and clip["roll_range_deg"] < 5  # the head did not move


@pytest.mark.parametrize("change, detail", [
    ({"face_px": 57.5}, "face_px 57.5 < quality.min_face_px=96"),
    ({"crop_outside_share": 0.3}, "crop_outside_share 0.3 > quality.max_crop_outside_share=0.1"),
    ({"yaw_deg": -50.0}, "|yaw_deg| 50 > quality.max_yaw_deg=35.0"),
    ({"brightness": 20.25}, "brightness 20.25 < quality.min_brightness=40.0"),
    ({}, None),
])
def test_a_rejected_metric_names_its_value_and_threshold(change, detail):
    assert judge({**GOOD, **change}, QualityConfig()).detail == detail
