from pathlib import Path

import numpy as np
import pytest

from curation import reasons
from curation.config import MediaConfig
from curation.media import iter_frames, load_audio, probe, scaled_size
from curation.reasons import Rejected

from clipmaker import make_clip


@pytest.fixture(scope="module")
def clip30(tmp_path_factory) -> Path:
    """3 s at 30 fps: frame i is grey 8*i, so decoded values tell which source frame was picked."""
    return make_clip(tmp_path_factory.mktemp("m") / "c30.mp4", fps=30, seconds=3.0)


def test_probe_normalises_to_constant_rate(clip30: Path) -> None:
    info = probe(clip30, MediaConfig(min_duration_s=1.0))
    assert (info.width, info.height, info.fps) == (64, 48, 25)
    assert info.num_frames == 75
    assert abs(info.source_fps - 30) < 0.01


def test_frames_are_nearest_source_frames_at_25fps(clip30: Path) -> None:
    info = probe(clip30, MediaConfig(min_duration_s=1.0))
    frames = list(iter_frames(info))
    assert [i for i, _ in frames] == list(range(75))
    got = np.array([int(f[..., 0].mean().round()) for _, f in frames])
    expected = (8 * np.round(np.arange(75) * 30 / 25)).astype(int) % 256
    assert np.abs(got - expected).max() <= 2  # lossless source, only colour conversion rounding


def test_generation_and_evaluation_read_video_as_curation_does(clip30: Path) -> None:
    """foundation.media_io.read_video (model.evaluate, the learning check) picks the same source frames."""
    from foundation.media_io import read_video

    curated = np.stack([f for _, f in iter_frames(probe(clip30, MediaConfig(min_duration_s=1.0)))])
    np.testing.assert_array_equal(read_video(clip30, 25), curated)


def test_seeking_yields_the_same_frames_as_a_full_decode(clip30: Path) -> None:
    info = probe(clip30, MediaConfig(min_duration_s=1.0))
    full = {i: f for i, f in iter_frames(info)}
    part = list(iter_frames(info, start_frame=40, end_frame=55))
    assert [i for i, _ in part] == list(range(40, 55))
    assert all(np.array_equal(full[i], f) for i, f in part)


def test_downscaled_analysis_frames(clip30: Path) -> None:
    info = probe(clip30, MediaConfig(min_duration_s=1.0))
    _, frame = next(iter_frames(info, short_side=24))
    assert frame.shape == (24, 32, 3)
    assert scaled_size(1920, 1080, 360) == (640, 360)


def test_audio_is_16k_mono_and_matches_video_length(clip30: Path) -> None:
    info = probe(clip30, MediaConfig(min_duration_s=1.0))
    audio = load_audio(info, 16000)
    assert audio.dtype == np.float32 and audio.shape == (48000,)
    spectrum = np.abs(np.fft.rfft(audio[4000:20000]))
    assert abs(np.argmax(spectrum) - 440) < 2  # 16000 samples at 16 kHz: bin k is k Hz


def test_bad_inputs_are_rejected_with_reasons(tmp_path: Path) -> None:
    silent_film = make_clip(tmp_path / "v.mp4", seconds=3.0, sample_rate=None)
    with pytest.raises(Rejected) as err:
        probe(silent_film, MediaConfig())
    assert err.value.reason == reasons.NO_AUDIO

    short = make_clip(tmp_path / "s.mp4", seconds=1.0)
    with pytest.raises(Rejected) as err:
        probe(short, MediaConfig(min_duration_s=2.0))
    assert err.value.reason == reasons.TOO_SHORT

    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    empty = tmp_path / "empty.mp4"  # a download that died before its first byte
    empty.touch()
    for broken in (text, empty):
        with pytest.raises(Rejected) as err:
            probe(broken, MediaConfig())
        assert err.value.reason == reasons.CORRUPT_MEDIA

    good = make_clip(tmp_path / "g.mp4", seconds=3.0)
    truncated = tmp_path / "t.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(Rejected) as err:
        probe(truncated, MediaConfig())
    assert err.value.reason == reasons.CORRUPT_MEDIA
