"""`python -m model.evaluate`: LSE-C / LSE-D of a video, with random SyncNet weights (no real ones
here), checked for plumbing: what it decodes, where it finds the face, and that its numbers are the
scorer's confidence and minimum distance on that face track."""
from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from examples import fixtures
from foundation.media_io import read_audio, read_video, write_video
from foundation.syncnet import FaceTrack, SyncNet, SyncNetScorer, face_track_crops
from model.evaluate import evaluate_video, face_boxes, main

SIZE = (320, 240)


@pytest.fixture(scope="module")
def talking(tmp_path_factory) -> fixtures.FixtureInfo:
    return fixtures.generate("in_sync", tmp_path_factory.mktemp("evaluate") / "talking.mp4", duration_s=1.2, size=SIZE)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("base") / "syncnet" / "syncnet_v2.model"
    path.parent.mkdir()
    torch.save(SyncNet().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def scorer(weights) -> SyncNetScorer:
    return SyncNetScorer(weights, "cpu")


@pytest.fixture(scope="module")
def metrics(talking, scorer):
    return evaluate_video(talking.path, scorer)


def test_metrics_are_the_scorers_confidence_and_min_distance_on_the_face(talking, scorer, metrics) -> None:
    with av.open(str(talking.path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    audio = read_audio(talking.path, 16000)[0][0][:len(frames) * 640]
    boxes, found = face_boxes(frames)
    assert found == len(frames) == 30
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    assert np.all(np.abs(centre - (SIZE[0] * 0.5, SIZE[1] * 0.45)) < 0.1 * np.array(SIZE))  # where the fixture put it
    (expected,) = scorer.score([FaceTrack(face_track_crops(frames, boxes), audio)])
    assert (metrics.frames, metrics.face_frames, metrics.face_track) == (30, 30, "face_mesh")
    assert metrics.lse_c == pytest.approx(expected.confidence, abs=1e-5)
    assert metrics.lse_d == pytest.approx(expected.min_dist, abs=1e-5)
    assert metrics.offset == expected.offset and metrics.lse_c >= 0


def test_a_video_without_a_face_is_scored_where_the_crops_put_it(tmp_path, scorer) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (12, 64, 64, 3), dtype=np.uint8)
    write_video(tmp_path / "noise.mp4", frames, 25, rng.normal(0, 0.1, (1, 12 * 640)).astype(np.float32))
    boxes, found = face_boxes(frames)
    assert found == 0
    side = 64 / 2.2  # FacesConfig.crop_scale
    np.testing.assert_allclose(boxes[0], [32 - side / 2, 32 - 0.1 * side - side / 2, 32 + side / 2, 32 - 0.1 * side + side / 2])
    metrics = evaluate_video(tmp_path / "noise.mp4", scorer)
    assert metrics.face_track == "crop_framing" and metrics.frames == 12 and np.isfinite(metrics.lse_d)


def test_read_video_resamples_to_25_fps(tmp_path) -> None:
    frames = np.stack([np.full((32, 32, 3), 8 * i, np.uint8) for i in range(30)])  # 1 s at 30 fps
    write_video(tmp_path / "30fps.mp4", frames, 30)
    resampled = read_video(tmp_path / "30fps.mp4", 25)
    assert resampled.shape == (25, 32, 32, 3)
    shown = np.round(resampled[:, 16, 16, 0] / 8).astype(int)  # which source frame each tick shows
    np.testing.assert_array_equal(shown, np.round(np.arange(25) / 25 * 30).astype(int))  # the nearest frame


def test_cli_prints_json_and_explains_what_is_missing(talking, weights, tmp_path, capsys, metrics) -> None:
    assert main(["--video", str(talking.path), "--base", str(weights.parents[1]), "--json", "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["lse_c"] == pytest.approx(metrics.lse_c) and printed["lse_d"] == pytest.approx(metrics.lse_d)
    assert (printed["offset"], printed["frames"], printed["weights"]) == (metrics.offset, 30, str(weights))
    assert main(["--video", str(talking.path), "--weights", str(weights), "--device", "cpu"]) == 0
    assert "LSE-C (confidence)" in capsys.readouterr().out
    assert main(["--video", str(talking.path), "--base", str(tmp_path)]) == 2
    assert "hallo-weights fetch" in capsys.readouterr().err
    assert main(["--video", str(tmp_path / "none.mp4"), "--weights", str(weights)]) == 2
    write_video(tmp_path / "mute.mp4", np.zeros((8, 32, 32, 3), np.uint8), 25)
    assert main(["--video", str(tmp_path / "mute.mp4"), "--weights", str(weights)]) == 1
    assert "no audio stream" in capsys.readouterr().err
