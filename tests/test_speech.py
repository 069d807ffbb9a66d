"""Speech presence with silero-vad on real speech, silence and music, speech quality with DNSMOS, and
choosing the vocal separator."""
import sys
import types

import numpy as np
import pytest

from curation.config import CurationConfig, SpeechConfig
from examples.fixtures import SAMPLE_RATE, chord_bed, speech_track, with_background
from curation.speech import (dnsmos, load_separator, make_separator, no_separation, resolve_separation, separate,
                             speech_ratio)
from foundation.config import ConfigError, load_config


def test_real_speech_is_mostly_speech() -> None:
    assert speech_ratio(speech_track(4.0), SAMPLE_RATE, SpeechConfig()) > 0.7


def test_hiss_and_music_are_not_speech() -> None:
    rng = np.random.default_rng(0)
    hiss = rng.normal(0, 1e-3, 4 * SAMPLE_RATE).astype(np.float32)
    t = np.arange(4 * SAMPLE_RATE) / SAMPLE_RATE
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6))  # A major, pulsing twice a second
    music = (0.1 * chord * (1 + np.sin(2 * np.pi * 2 * t)) / 2).astype(np.float32)
    for audio in (hiss, music, np.zeros(0, np.float32)):
        assert speech_ratio(audio, SAMPLE_RATE, SpeechConfig()) < SpeechConfig().min_ratio


def test_a_stricter_vad_threshold_counts_less_speech() -> None:
    speech = speech_track(4.0) * 0.05
    assert speech_ratio(speech, SAMPLE_RATE, SpeechConfig(vad_threshold=0.95)) <= \
        speech_ratio(speech, SAMPLE_RATE, SpeechConfig(vad_threshold=0.3))


@pytest.fixture
def separators(monkeypatch) -> str:
    """A module with separator factories, importable by name as a user's plug-in would be."""
    module = types.ModuleType("test_separators")
    module.scaled = lambda gain: (lambda audio, sample_rate: audio * gain)
    module.truncating = lambda: (lambda audio, sample_rate: audio[:-1])
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module.__name__


def test_separator_plugin_is_loaded_from_its_spec_with_arguments(separators) -> None:
    audio = speech_track(0.5)
    assert load_separator(None) is no_separation
    halve = load_separator(f"{separators}:scaled", {"gain": 0.5})
    np.testing.assert_allclose(separate(halve, audio, SAMPLE_RATE), audio * 0.5)
    with pytest.raises(ValueError, match="returned"):
        separate(load_separator(f"{separators}:truncating"), audio, SAMPLE_RATE)
    with pytest.raises(ValueError, match="must look like"):
        load_separator("no_colon_here")
    with pytest.raises(AttributeError):
        load_separator(f"{separators}:missing")


def test_speech_config_is_checked_at_load() -> None:
    with pytest.raises(ConfigError, match="speech.min_ratio"):
        load_config(CurationConfig, None, ["speech.min_ratio=1.5"])
    with pytest.raises(ConfigError, match="media.sample_rate"):
        load_config(CurationConfig, None, ["media.sample_rate=44100"])
    cfg = load_config(CurationConfig, None, ["speech.separator=my_separators:kim_vocal_2",
                                             "speech.separator_args={model_dir: /models/uvr}"])
    assert cfg.speech.separator_args == {"model_dir": "/models/uvr"}


def test_dnsmos_orders_clean_over_noisy_over_music_bed_speech() -> None:
    """Real speech, then the same with white noise at 5 dB SNR, then over a chord bed at 0 dB SNR."""
    speech = speech_track(6.0) * 0.5
    noise = np.random.default_rng(0).standard_normal(speech.size).astype(np.float32)
    clean, noisy, music = (dnsmos(audio, SAMPLE_RATE) for audio in (
        speech, with_background(speech, noise, 5.0), with_background(speech, chord_bed(speech.size), 0.0)))
    assert clean["dnsmos_ovrl"] > noisy["dnsmos_ovrl"] > music["dnsmos_ovrl"]
    assert clean["dnsmos_bak"] > noisy["dnsmos_bak"]  # the noise is heard as background
    # the documented threshold keeps clean speech and rejects both others
    assert clean["dnsmos_ovrl"] > SpeechConfig().min_dnsmos > noisy["dnsmos_ovrl"]


def test_separation_auto_follows_the_model_files(tmp_path, tiny_pretrained) -> None:
    assert resolve_separation(SpeechConfig(), str(tiny_pretrained)).separation == "on"
    assert resolve_separation(SpeechConfig(), str(tmp_path)).separation == "off"
    assert resolve_separation(SpeechConfig(separation="off"), str(tiny_pretrained)).separation == "off"
    with pytest.raises(ConfigError, match="speech.separation"):
        resolve_separation(SpeechConfig(separation="on"), str(tmp_path))
    # a plug-in separator needs no model files
    assert resolve_separation(SpeechConfig(separator="my_separators:make"), str(tmp_path)).separation == "on"
    separator, name = make_separator(SpeechConfig(), str(tmp_path))
    assert separator is no_separation and name is None
