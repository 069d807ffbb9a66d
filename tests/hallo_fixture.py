"""Base folders for Hallo parity fixtures (tests/fixtures/hallo_tiny and others of its layout).

A user converts Hallo's net.pth against a base folder (hallo-weights hallo --base BASE):
its unet/config.json and wav2vec2 config fix the sizes. A fixture's are tiny, so these write a base
folder at the fixture's sizes.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import yaml
from transformers import Wav2Vec2Config

ROOT = Path(__file__).resolve().parents[1]
HALLO_TINY = ROOT / "tests" / "fixtures" / "hallo_tiny"


def fixture_config(fixture: Path) -> dict:
    return yaml.safe_load((fixture / "hallo.yaml").read_text())


def wav2vec2_sizes(fixture: Path) -> dict:
    """wav2vec2 config entries whose layers x width the fixture's audio projection takes."""
    audio = fixture_config(fixture)["audio_proj"]
    return {"num_hidden_layers": audio["blocks"], "hidden_size": audio["channels"]}


def write_config_base(fixture: Path, base: Path) -> Path:
    """Only the configs the conversion reads: unet/config.json and wav2vec2/config.json."""
    (base / "unet").mkdir(parents=True)
    shutil.copy(fixture / "unet" / "config.json", base / "unet" / "config.json")
    Wav2Vec2Config(num_attention_heads=1, **wav2vec2_sizes(fixture)).save_pretrained(base / "wav2vec2")
    return base


def write_standin_base(fixture: Path, base: Path) -> Path:
    """Tiny stand-ins of every base (`python -m examples.standins`) with a wav2vec2 at the fixture's
    sizes, so that curation, training and generation run with the converted fixture."""
    from model.presets import get_preset
    from examples.standins import write_standins

    tiny = get_preset("tiny")
    sizes = wav2vec2_sizes(fixture)
    write_standins(dataclasses.replace(tiny, wav2vec2={**tiny.wav2vec2, **sizes, "intermediate_size": 2 * sizes["hidden_size"]}),
                   base)
    shutil.rmtree(base / "unet")
    (base / "unet").mkdir()
    shutil.copy(fixture / "unet" / "config.json", base / "unet" / "config.json")
    return base
