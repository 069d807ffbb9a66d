"""The talking-clip fixtures are what they claim: probes, face counts, and lips that articulate the
speech the way real ones do (leading it, shaped by the sound rather than its loudness, resting in
pauses) rather than following its loudness, the assumption of the weight-free lip-sync scorer."""
from __future__ import annotations

import json
from pathlib import Path

import av
import mediapipe as mp
import numpy as np
import pytest

from curation import reasons
from examples import articulation, fixtures

DURATION_S = 5.0
FRAMES = round(DURATION_S * fixtures.FPS)
MIN_FACE_PX = 96


@pytest.fixture
def made(fixture_by_variant) -> dict[str, fixtures.FixtureInfo]:
    """The session's fixtures (tests/conftest.py generates every variant once, at the default 5 s)."""
    return fixture_by_variant


def decode_video(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def decode_audio(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.concatenate([frame.to_ndarray().reshape(-1) for frame in container.decode(audio=0)])


def lip_shapes(frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Inner-lip gap (landmarks 13/14) and inner mouth width (78/308) over face height per frame,
    and faces found per frame."""
    gaps, widths, counts = [], [], []
    with mp.solutions.face_mesh.FaceMesh(max_num_faces=2, refine_landmarks=True) as mesh:
        for frame in frames:
            faces = mesh.process(frame).multi_face_landmarks or []
            counts.append(len(faces))
            if faces:
                points = np.array([(p.x, p.y) for p in faces[0].landmark]) * frame.shape[1::-1]
                gaps.append(np.linalg.norm(points[13] - points[14]) / np.ptp(points[:, 1]))
                widths.append(np.linalg.norm(points[78] - points[308]) / np.ptp(points[:, 1]))
    return np.array(gaps), np.array(widths), counts


def lag_correlations(lips: np.ndarray, loudness: np.ndarray, lags: range) -> dict[int, float]:
    """Pearson r of lips[t] with loudness[t + lag]."""
    n = min(len(lips), len(loudness))
    return {lag: float(np.corrcoef(lips[max(0, -lag):n - max(0, lag)], loudness[max(0, lag):n - max(0, -lag)])[0, 1])
            for lag in lags}


def detected_widths(frames: list[np.ndarray]) -> list[list[float]]:
    """Face-box widths in pixels per frame from the full-range mediapipe detector."""
    with mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5) as detector:
        return [[d.location_data.relative_bounding_box.width * f.shape[1] for d in detector.process(f).detections or []]
                for f in frames]


def test_expected_json_lists_every_file_with_its_outcome(made):
    out_dir = made["in_sync"].path.parent
    expected = json.loads((out_dir / "expected.json").read_text())
    assert set(expected) == {info.path.name for info in made.values()}
    assert all((out_dir / name).is_file() for name in expected)
    assert expected["wrong_extension.mp4"]["reason"] == reasons.CORRUPT_MEDIA
    assert expected["odd_extension.dat"]["status"] == fixtures.ACCEPTED
    assert (expected["shifted_10.mp4"]["status"], expected["shifted_10.mp4"]["shift_frames"]) == ("accepted", 10)
    assert expected["scene_cut.mp4"]["clips"] == 2 and expected["scene_cut.mp4"]["cuts"] == [62]
    outcomes = {info.variant: info.reason for info in made.values()}
    assert outcomes == {
        "in_sync": None, "shifted_5": None, "shifted_10": None, "scene_cut": None, "silent": None,
        "odd_extension": None, "two_faces": reasons.MULTIPLE_FACES, "no_face": reasons.NO_FACE,
        "no_audio": reasons.NO_AUDIO, "truncated": reasons.CORRUPT_MEDIA, "wrong_extension": reasons.CORRUPT_MEDIA,
        "tiny_face": reasons.FACE_TOO_SMALL,
    }


@pytest.mark.parametrize("variant", [v for v, spec in fixtures.VARIANTS.items() if spec.damage == "none"])
def test_probe_matches_the_variant(made, variant):
    info = made[variant]
    with av.open(str(info.path)) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == "h264" and video.codec_context.format.name == "yuv420p"
        assert video.average_rate == fixtures.FPS and (video.width, video.height) == (640, 480)
        assert abs(video.frames - FRAMES) <= 1
        assert abs(float(video.duration * video.time_base) - DURATION_S) <= 1 / fixtures.FPS
        assert len(container.streams.audio) == int(info.has_audio)
        if info.has_audio:
            audio = container.streams.audio[0]
            assert audio.codec_context.name == "aac" and audio.sample_rate == fixtures.SAMPLE_RATE
            assert abs(float(audio.duration * audio.time_base) - DURATION_S) <= 1 / fixtures.FPS


@pytest.mark.parametrize("variant", ["truncated", "wrong_extension"])
def test_broken_files_do_not_decode(made, variant):
    with pytest.raises(av.error.FFmpegError):
        decode_video(made[variant].path)


def test_rendered_lips_show_the_articulation(made):
    info = made["in_sync"]
    gaps, widths, counts = lip_shapes(decode_video(info.path))
    assert counts == [1] * FRAMES
    assert np.corrcoef(gaps, info.mouth_open)[0, 1] > 0.5  # the face mesh sees the jaw drop
    assert np.corrcoef(widths, info.mouth_spread)[0, 1] > 0.7  # and the lips spread and round
    assert gaps.max() > 2 * gaps.min()  # the mouth visibly opens, not a 1-pixel flutter


def test_shifted_audio_lags_the_in_sync_audio_by_the_recorded_frames(made):
    info = made["shifted_10"]
    np.testing.assert_array_equal(info.mouth_open, made["in_sync"].mouth_open)  # the same lips
    r = lag_correlations(fixtures.loudness_envelope(decode_audio(made["in_sync"].path)),
                         fixtures.loudness_envelope(decode_audio(info.path)), range(-15, 16))
    assert max(r, key=r.get) == info.shift_frames and r[info.shift_frames] > 0.95


def test_opening_and_spreading_the_mouth_move_the_mesh_landmarks():
    photo = fixtures.load_photo("grace_hopper")
    (shut, wide), _, _ = lip_shapes([fixtures.open_mouth(photo, 0.0), fixtures.open_mouth(photo, 1.0)])
    assert shut < 0.02 and wide > 0.1
    _, (rounded, spread), _ = lip_shapes([fixtures.open_mouth(photo, 0.3, -1.0), fixtures.open_mouth(photo, 0.3, 1.0)])
    assert spread > 1.15 * rounded


def test_face_counts_and_sizes(made):
    widths = {v: detected_widths(decode_video(made[v].path)[::10]) for v in ("in_sync", "two_faces", "no_face",
                                                                              "tiny_face")}
    assert all(len(w) == 1 and w[0] > MIN_FACE_PX for w in widths["in_sync"])
    assert all(len(w) == 2 and min(w) > 0.8 * max(w) for w in widths["two_faces"])
    assert all(w == [] for w in widths["no_face"])
    assert all(len(w) == 1 and w[0] < MIN_FACE_PX for w in widths["tiny_face"])


def test_scene_cut_is_a_hard_cut_between_two_people(made):
    frames = decode_video(made["scene_cut"].path)
    change = np.array([np.abs(b.astype(np.int16) - a).mean() for a, b in zip(frames[:-1], frames[1:])])
    (cut,) = made["scene_cut"].cuts
    assert np.argmax(change) + 1 == cut and change[cut - 1] > 10 * np.median(change)


def test_silent_track_is_quiet_and_the_mouth_stays_at_rest(made):
    info = made["silent"]
    assert info.mouth_open.max() == pytest.approx(articulation.REST_APERTURE) and np.abs(info.mouth_spread).max() < 1e-3
    rms = np.sqrt(np.mean(decode_audio(info.path) ** 2))
    assert 20 * np.log10(rms) < -50


def test_the_mouth_articulates_rather_than_follows_the_loudness(made):
    info = made["in_sync"]
    opening, spread, loudness = info.mouth_open, info.mouth_spread, info.loudness
    assert opening.shape == spread.shape == loudness.shape == (FRAMES,)
    r = lag_correlations(opening, loudness, range(-5, 6))
    assert max(r, key=r.get) in (1, 2)  # the lips lead the sound by a frame or two
    assert r[max(r, key=r.get)] < 0.8  # related to loudness, as real lips are, but far from a copy of it
    loud = loudness > np.percentile(loudness, 60)
    assert np.sum(loud & (opening < 0.25)) >= 5  # loud sounds from a small mouth (close vowels, fricatives)
    assert spread.std() > 0.3 and abs(np.corrcoef(spread, loudness)[0, 1]) < 0.5  # lip shape is not loudness
    assert opening.max() > 0.6
    np.testing.assert_array_equal(made["shifted_5"].mouth_open, opening)
    np.testing.assert_array_equal(made["shifted_5"].loudness[5:], loudness[:-5])


def test_pauses_rest_the_mouth_and_it_opens_before_the_sound():
    speech = fixtures.speech_track(12.0)
    mouth = articulation.articulation(speech, fixtures.SAMPLE_RATE, fixtures.FPS, 300)
    level_db = 20 * np.log10(fixtures.loudness_envelope(speech)[:300] + 1e-9)
    silent = (level_db < -100).astype(int)  # the digital silence between utterances
    pause_starts, pause_ends = np.flatnonzero(np.diff(silent) == 1) + 1, np.flatnonzero(np.diff(silent) == -1) + 1
    lengths = pause_ends - pause_starts[:len(pause_ends)]
    assert len(pause_ends) >= 2 and np.ptp(lengths) >= 2  # several pauses, of different lengths
    rest = articulation.REST_APERTURE + 1e-6
    for start, end in zip(pause_starts, pause_ends):
        assert mouth.aperture[start:end].min() <= rest  # the mouth comes to rest in the pause
        speaking = end + int(np.argmax(level_db[end:] > -35))  # the first frame loud enough to be speech
        assert mouth.aperture[speaking - 1] > rest  # the mouth is already opening a frame before it


def test_rendering_is_deterministic_per_seed():
    spec = fixtures.VARIANTS["in_sync"]
    mouth = articulation.MouthTrack(np.linspace(0, 1, 6), np.linspace(-1, 1, 6))
    a, b, c = (np.stack(list(fixtures.render_frames(spec, mouth, (320, 240), seed))) for seed in (1, 1, 2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.abs(np.diff(a.astype(np.int16), axis=0)).mean() > 1  # no two frames are the same still


def test_expected_clips_follow_the_clip_lengths():
    assert fixtures.expected_clips(fixtures.VARIANTS["in_sync"], 25 * 25) == 3
    assert fixtures.expected_clips(fixtures.VARIANTS["scene_cut"], 3 * 25) == 0


def test_cli_writes_the_chosen_variants(tmp_path):
    fixtures.main(["--out", str(tmp_path), "--variants", "in_sync,wrong_extension", "--duration", "2.4",
                   "--size", "320x240"])
    expected = json.loads((tmp_path / "expected.json").read_text())
    assert sorted(expected) == ["in_sync.mp4", "wrong_extension.mp4"]
    with av.open(str(tmp_path / "in_sync.mp4")) as container:
        video = container.streams.video[0]
        assert (video.width, video.height, video.frames) == (320, 240, 60)
    with pytest.raises(SystemExit):
        fixtures.main(["--out", str(tmp_path), "--variants", "nope"])
