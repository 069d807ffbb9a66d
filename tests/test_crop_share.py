"""Honest crops: the share of the square crop that lies outside the frame, and `crop_off_frame`.

`crop_boxes` shifts a square that overflows the frame back inside, so a crop leaves the frame only
where it is larger than the frame: a face too close for faces.crop_scale. The clips here are a real
photo framed that tightly: by a few pixels (kept) and by a lot (rejected).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from curation import reasons
from examples import fixtures
from curation.config import CurationConfig, QualityConfig
from curation.pipeline import process_source
from curation.sources import parse_source
from foundation.config import load_config
from foundation.faces import outside_share


def test_outside_share_of_squares():
    boxes = np.array([[10, 10, 50, 50], [-10, 0, 100, 100], [-10, -10, 120, 120], [300, 0, 50, 50]], np.float32)
    np.testing.assert_allclose(outside_share(boxes[:, :3], 200, 100),
                               [0.0, 0.1, 1 - 110 * 100 / 120 ** 2, 1.0], atol=1e-6)


def _tight_clip(path: Path, height: int) -> Path:
    """3 s of the astronaut photo (2x), cut to a frame `height` px tall around her face, with noise
    and real speech. Her crop square (2.2 x the face, as crop_boxes makes it) is about 490 px."""
    photo = cv2.resize(skimage.data.astronaut(), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    top = 250 - height // 2  # the face spans about y 135..345, x 345..555
    frame = photo[top:top + height, 130:770]
    rng = np.random.default_rng(0)
    frames = (cv2.add(frame, rng.integers(-3, 4, frame.shape, dtype=np.int16), dtype=cv2.CV_8U) for _ in range(75))
    fixtures.write_mp4(path, frames, (frame.shape[1], height), fixtures.speech_track(3.0))
    return path


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[int, object]:
    folder = tmp_path_factory.mktemp("crop_share")
    # a still photo with noise: the motion checks (static_picture, static_face) would reject it first
    cfg = load_config(CurationConfig, None, ["annotations.enabled=false", "sync.backend=envelope",
                                             "motion.min_picture_change=0", "motion.min_mouth_motion=0"])
    out = {}
    for height in (480, 320):
        clip = _tight_clip(folder / f"tight_{height}.mp4", height)
        (row,) = process_source(parse_source(str(clip), folder / "out"), folder / "out", cfg)
        out[height] = row
    return out


def test_a_crop_a_few_pixels_over_the_frame_passes(outcomes):
    row = outcomes[480]
    assert 0 < row.crop_outside_share < 0.05 and row.reason != reasons.CROP_OFF_FRAME, row  # measured: 0.026


def test_a_crop_far_over_the_frame_is_rejected_with_value_and_threshold(outcomes):
    row = outcomes[320]
    assert row.reason == reasons.CROP_OFF_FRAME and row.status == "rejected", row
    assert 0.2 < row.crop_outside_share < 0.4  # measured: 0.36; a 320 px frame under a ~490 px square
    limit = QualityConfig().max_crop_outside_share
    assert row.detail == f"crop_outside_share {row.crop_outside_share:.4g} > quality.max_crop_outside_share={limit}"
