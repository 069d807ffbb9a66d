"""Motion that talking needs, and the cheap screens before the full analysis, on real fixture media:
a real talking clip held still, frozen, cut into a slideshow, or with its mouth at rest."""
from pathlib import Path

import numpy as np
import pytest

import curation.pipeline
import curation.screen
import motion_media
from clipmaker import make_clip
from curation import reasons
from examples import fixtures
from curation.config import CurationConfig
from curation.media import iter_frames, probe
from curation.pipeline import process_source
from curation.screen import speech_stretches, voiced_frames
from curation.sources import parse_source
from foundation.config import load_config

FPS = fixtures.FPS
FREEZE = (75, 125)  # frames [3 s, 5 s) of an 8 s talking clip show frame 75


@pytest.fixture(scope="module")
def cfg() -> CurationConfig:
    return load_config(CurationConfig, None, ["annotations.enabled=false"])


@pytest.fixture(scope="module")
def talking(tmp_path_factory) -> Path:
    """The in_sync fixture at 8 s: long enough for a clip either side of a 2 s freeze."""
    return fixtures.generate("in_sync", tmp_path_factory.mktemp("talking") / "talking.mp4", duration_s=8).path


@pytest.fixture(scope="module")
def curated(talking, cfg, tmp_path_factory) -> dict[str, list]:
    work = tmp_path_factory.mktemp("motion")
    media = {
        "still": motion_media.still(talking, work / "still.mp4"),
        "slideshow": motion_media.slideshow(talking, work / "slideshow.mp4"),
        "frozen": motion_media.frozen(talking, work / "frozen.mp4", FREEZE[0], FREEZE[1] - FREEZE[0]),
        "shut_mouth": motion_media.shut_mouth(work / "shut_mouth.mp4", 6),
    }
    out = work / "out"
    return {name: process_source(parse_source(str(path), out), out, cfg) for name, path in media.items()}


def test_a_still_photo_with_speech_is_a_static_picture(curated) -> None:
    (row,) = curated["still"]
    assert row.reason == reasons.STATIC_PICTURE and row.shard is None
    assert (row.start_s, row.end_s) == (0.0, 8.0) and row.picture_change < 0.05
    assert "motion.max_static_s" in row.detail


def test_a_slideshow_of_three_stills_keeps_nothing(curated) -> None:
    rows = curated["slideshow"]
    assert [r.reason for r in rows] == [reasons.STATIC_PICTURE] * 3
    assert rows[0].start_s == 0.0 and [r.start_s for r in rows[1:]] == [r.end_s for r in rows[:-1]] and rows[-1].end_s == 8.0
    assert all(2.5 < r.end_s - r.start_s < 2.8 for r in rows)


def test_a_freeze_is_cut_out_and_the_talking_either_side_kept(curated) -> None:
    rows = curated["frozen"]
    frozen = [r for r in rows if r.reason == reasons.STATIC_PICTURE]
    accepted = [r for r in rows if r.status == "accepted"]
    assert len(frozen) == 1 and len(accepted) == 2, [(r.reason, r.start_s, r.end_s) for r in rows]
    start, end = FREEZE[0] / FPS, FREEZE[1] / FPS
    # the encoder refines the held frame for a frame or two: the cut may start that much later
    assert start <= frozen[0].start_s <= start + 0.2 and frozen[0].end_s == end
    assert all(r.end_s <= frozen[0].start_s or r.start_s >= end for r in accepted)
    assert all(r.mouth_motion > 0.012 and r.picture_change > 0.2 for r in accepted)
    # every frame accounted for once, in order
    assert [r.start_s for r in rows[1:]] == [r.end_s for r in rows[:-1]] and rows[-1].end_s == 8.0


def test_a_moving_head_that_does_not_talk_is_a_static_face(curated) -> None:
    (row,) = curated["shut_mouth"]
    assert row.reason == reasons.STATIC_FACE
    assert row.picture_change > 0.2 and row.face_motion > 0  # the picture and the head do move
    assert row.mouth_motion < 0.012 and "motion.min_mouth_motion" in row.detail


def _no_video_decode(*args, **kwargs):
    raise AssertionError("the video was decoded")


def test_a_source_without_speech_is_rejected_before_any_video_decode(fixture_by_variant, cfg, tmp_path,
                                                                     monkeypatch) -> None:
    monkeypatch.setattr(curation.pipeline, "iter_frames", _no_video_decode)
    monkeypatch.setattr(curation.screen, "iter_frames", _no_video_decode)
    (row,) = process_source(parse_source(str(fixture_by_variant["silent"].path), tmp_path), tmp_path, cfg)
    assert row.reason == reasons.NO_SPEECH and row.clip_id is None and row.speech_ratio < 0.1
    assert "screen.min_speech_ratio" in row.detail


def test_a_source_without_a_face_is_rejected_by_the_probe(fixture_by_variant, cfg, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(curation.pipeline, "analyse", _no_video_decode)
    (row,) = process_source(parse_source(str(fixture_by_variant["no_face"].path), tmp_path), tmp_path, cfg)
    assert row.reason == reasons.NO_FACE and row.clip_id is None
    assert "5 probe frame(s)" in row.detail  # 5 s, one frame a second


def test_only_stretches_near_speech_are_analysed(cfg) -> None:
    """Real speech, 25 s of silence, real speech: the middle of the silence cannot be in any clip."""
    rate = fixtures.SAMPLE_RATE
    audio = np.concatenate([fixtures.speech_track(5), np.zeros(25 * rate, np.float32), fixtures.speech_track(5)])
    voiced = voiced_frames(audio, 35 * FPS, FPS, rate, cfg)
    assert 0.6 < voiced[:5 * FPS].mean() and not voiced[6 * FPS:29 * FPS].any()
    (a0, b0), (a1, b1) = speech_stretches(voiced, FPS, cfg)
    reach, window = (cfg.clips.max_s - cfg.clips.min_s) * FPS, cfg.clips.min_s * FPS
    last_heard, next_heard = np.flatnonzero(voiced[:15 * FPS]).max() + 1, np.flatnonzero(voiced[15 * FPS:]).min() + 15 * FPS
    assert a0 == 0 and b1 == 35 * FPS
    # a window reaches a quarter voiced (screen.min_speech_ratio) up to 3/4 of its length past the speech
    assert last_heard + reach <= b0 <= last_heard + reach + window
    assert next_heard - reach - window <= a1 <= next_heard - reach
    assert speech_stretches(np.zeros(35 * FPS, bool), FPS, cfg) == []


def test_a_silent_tail_far_from_speech_is_recorded_not_analysed(talking, tmp_path) -> None:
    cfg = load_config(CurationConfig, None, ["annotations.enabled=false", "clips.max_s=3"])
    rate = fixtures.SAMPLE_RATE
    audio = np.concatenate([fixtures.speech_track(4), np.zeros(4 * rate, np.float32)])
    source = motion_media.with_audio(talking, tmp_path / "quiet_tail.mp4", audio)
    rows = process_source(parse_source(str(source), tmp_path), tmp_path, cfg)
    skipped = rows[-1]
    assert skipped.reason == reasons.NO_SPEECH and skipped.speech_ratio == 0.0 and "not analysed" in skipped.detail
    assert 5.5 <= skipped.start_s <= 7.0 and skipped.end_s == 8.0
    assert any(r.status == "accepted" for r in rows)
    assert [r.start_s for r in rows[1:]] == [r.end_s for r in rows[:-1]] and rows[0].start_s == 0.0


def test_the_probe_s_sparse_decode_yields_the_frames_of_the_full_one(tmp_path) -> None:
    info = probe(make_clip(tmp_path / "ramp.mp4", fps=10, seconds=3.0), CurationConfig().media)
    full = dict(iter_frames(info, 7, 70))
    sparse = list(iter_frames(info, 7, 70, step=25))
    assert [i for i, _ in sparse] == [7, 32, 57]
    assert all(np.array_equal(frame, full[i]) for i, frame in sparse)
