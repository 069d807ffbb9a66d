"""Spoken language per clip: Whisper's language detection, loaded by the same code real weights take (a tiny
Whisper from the real transformers classes whose detection always answers one language stands in), drives
`speech.languages` and the hours per language of the summary and the funnel figure."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import webdataset as wds

from curation import reasons
from curation.config import CurationConfig, SpeechConfig
from curation.speech_sync_annotate import preflight
from examples.fixtures import speech_track
from curation.language import LanguageIdentifier, check_language_model
from curation.manifest import plot_funnel, summarize
from curation.pipeline import process_source_safely
from curation.sources import parse_source
from foundation import schema
from foundation.config import ConfigError, load_config
from examples.standins import write_whisper


@pytest.fixture(scope="module")
def mandarin_base(tiny_pretrained, tmp_path_factory) -> Path:
    """The tiny bases plus a Whisper stand-in at BASE/whisper that hears Mandarin in everything."""
    base = tmp_path_factory.mktemp("mandarin_base")
    for entry in tiny_pretrained.iterdir():
        (base / entry.name).symlink_to(entry)
    write_whisper(base / "whisper", "zh")
    return base


def test_whisper_language_detection_loads_and_answers(mandarin_base, tmp_path) -> None:
    identify = LanguageIdentifier(mandarin_base / "whisper")
    language, probability = identify(speech_track(3.0), 16000)
    assert language == "zh" and probability > 0.99
    write_whisper(tmp_path / "en", "en")
    assert LanguageIdentifier(tmp_path / "en")(speech_track(3.0), 16000)[0] == "en"
    english_only = tmp_path / "en_only"
    write_whisper(english_only, "en")
    config = json.loads((english_only / "generation_config.json").read_text())
    del config["lang_to_id"]
    (english_only / "generation_config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="not a multilingual Whisper"):
        LanguageIdentifier(english_only)


def test_a_language_filter_without_a_language_model_is_refused_at_start(tiny_pretrained, tmp_path) -> None:
    assert check_language_model(SpeechConfig(), tiny_pretrained) is None  # no model: no language recorded
    with pytest.raises(ConfigError, match="'speech.languages' keeps only \\['zh'\\] but no language model"):
        preflight(load_config(CurationConfig, None, [f"pretrained_dir={tiny_pretrained}", "speech.languages=[zh]"]))
    with pytest.raises(ConfigError, match="'speech.language_model'.*incomplete"):
        check_language_model(SpeechConfig(language_model=str(tmp_path)), tiny_pretrained)


def _curate(base: Path, source: Path, out: Path, languages: str) -> list:
    cfg = preflight(load_config(CurationConfig, None, [f"pretrained_dir={base}", f"speech.languages={languages}"]))
    assert cfg.speech.language_model == str(base / "whisper")  # found in the base folder and pinned
    return process_source_safely(parse_source(str(source), out), out, cfg)


def test_the_language_drives_the_filter_the_samples_and_the_summary(mandarin_base, fixture_by_variant, tmp_path) -> None:
    source = fixture_by_variant["in_sync"].path
    english = _curate(mandarin_base, source, tmp_path / "en", "[en]")
    clips = [r for r in english if r.clip_id]
    assert clips and all(r.reason == reasons.OTHER_LANGUAGE and r.language == "zh" and r.language_prob > 0.99
                         for r in clips)
    assert not (tmp_path / "en" / "shards").exists() or not list((tmp_path / "en" / "shards").glob("*.tar"))

    mandarin = _curate(mandarin_base, source, tmp_path / "zh", "[zh, en]")
    accepted = [r for r in mandarin if r.status == "accepted"]
    assert accepted and all(r.language == "zh" for r in accepted)
    shard = next((tmp_path / "zh" / "shards").glob("*.tar"))
    meta = schema.ClipMeta.from_json(next(iter(wds.WebDataset(str(shard), shardshuffle=False)))["json"])
    assert (meta.language, round(meta.language_prob, 2)) == ("zh", 1.0)

    summary = summarize(english + mandarin, wall_s=1.0)
    seconds = sum(r.end_s - r.start_s for r in accepted)
    assert summary["hours_by_language"] == {"zh": pytest.approx(seconds / 3600)}
    assert summary["speech_hours_by_language"] == {"zh": pytest.approx(2 * seconds / 3600)}  # found in both runs
    assert summary["by_reason"][reasons.OTHER_LANGUAGE] == len(clips)
    figure = cv2.imdecode(np.frombuffer(plot_funnel(english + mandarin), np.uint8), cv2.IMREAD_COLOR)
    assert figure.shape[1] == 1400  # three panels on top: funnel, reasons, spoken language (balance below)
