"""Vocal separation through audio-separator's own loading and MDX inference code, on the stand-in model."""
from __future__ import annotations

import json

import numpy as np
import pytest

from examples.fixtures import SAMPLE_RATE, speech_track
from foundation.vocals import MODEL_FILE, MdxVocals, missing_files, model_hash, model_in


@pytest.fixture(scope="module")
def separator(tiny_pretrained) -> MdxVocals:
    return MdxVocals(model_in(tiny_pretrained))


def _band_power(audio: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    hz = np.fft.rfftfreq(audio.size, 1 / SAMPLE_RATE)
    return float(spectrum[(hz >= low) & (hz <= high)].sum())


def test_the_stand_in_runs_through_audio_separator(separator, tiny_pretrained) -> None:
    """audio-separator found the stand-in's parameters by its hash, as it finds Kim_Vocal_2's, and ran its
    MDX path: the stand-in's voice band-pass shows in what comes back."""
    data = json.loads((model_in(tiny_pretrained).parent / "mdx_model_data.json").read_text())
    params = data[model_hash(model_in(tiny_pretrained))]
    assert (separator.mdx.dim_f, separator.mdx.dim_t, separator.mdx.n_fft) == (
        params["mdx_dim_f_set"], 2 ** params["mdx_dim_t_set"], params["mdx_n_fft_scale_set"]) == (3072, 256, 7680)
    assert separator.mdx.primary_stem_name == "Vocals"
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    speech = speech_track(3.0) * 0.5
    hum = (0.2 * np.sin(2 * np.pi * 50 * t)).astype(np.float32)  # mains hum, below the voice band
    vocals = separator(speech + hum, SAMPLE_RATE)
    assert vocals.shape == speech.shape and vocals.dtype == np.float32
    assert _band_power(vocals, 40, 60) < 1e-3 * _band_power(speech + hum, 40, 60)
    assert np.corrcoef(vocals, speech)[0, 1] > 0.8


def test_missing_separator_files_are_named(tmp_path) -> None:
    (tmp_path / MODEL_FILE).write_bytes(b"x")
    assert missing_files(tmp_path / MODEL_FILE) == [str(tmp_path / n) for n in
                                                    ("download_checks.json", "mdx_model_data.json", "vr_model_data.json")]
    with pytest.raises(FileNotFoundError, match="hallo-weights fetch"):
        MdxVocals(tmp_path / MODEL_FILE)


def test_the_summary_warns_when_accepted_clips_were_not_separated() -> None:
    from curation.manifest import ManifestRow, summarize

    def row(clip: str, separated: bool, status: str = "accepted") -> ManifestRow:
        return ManifestRow(source="s", source_id="s", status=status, clip_id=clip, start_s=0.0, end_s=2.0,
                           vocals_separated=separated, sync_backend="syncnet", sync_verified=True)

    assert summarize([row("a", True), row("b", False, "rejected")], 1.0)["warnings"] == []
    summary = summarize([row("a", True), row("b", False), row("c", False)], 1.0)
    assert summary["accepted_unseparated"] == 2
    assert summary["warnings"] == [summary["warnings"][0]] and "2 accepted clips" in summary["warnings"][0]
