"""End-to-end generation with the tiny stand-ins: the real loading, preprocessing and muxing code."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from foundation.audio_features import num_frames
from model.generate import GenerateConfig, main, parse_args, prepare
from model.weights import read_index
from foundation.config import ConfigError, load_config


def _decode(path):
    with av.open(str(path)) as container:
        kinds = [s.type for s in container.streams]
        audio = container.streams.audio[0]
        audio_s = float(audio.duration * audio.time_base)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return kinds, audio_s, np.stack(frames)


def test_generate_writes_a_playable_mp4_as_long_as_the_audio(tiny_weights, portrait, short_speech, tmp_path):
    out = tmp_path / "out.mp4"
    args = ["--weights", str(tiny_weights), "--image", str(portrait), "--audio", str(short_speech),
            "--out", str(out), "--steps", "2", "--set", "progress=false"]
    assert main(args) == 0
    kinds, audio_s, frames = _decode(out)
    n_samples = sf.info(short_speech).frames
    assert sorted(kinds) == ["audio", "video"]
    assert frames.shape == (num_frames(n_samples), 64, 64, 3)  # 30 frames: 4 clips of 8, trimmed
    assert abs(audio_s - n_samples / 16000) < 0.1  # AAC adds under one frame of padding
    assert frames.std() > 0


def test_same_seed_same_frames(tiny_weights, portrait, short_speech):
    cfg = GenerateConfig(weights=str(tiny_weights), image=str(portrait), audio=str(short_speech), steps=2, progress=False)
    pipeline, reference, features, settings = prepare(cfg)
    assert features.shape[0] == 30 and settings.clip_frames == read_index(tiny_weights).clip_frames
    first = pipeline(reference, features, settings, progress=False)
    again = pipeline(reference, features, settings, progress=False)
    other = pipeline(reference, features, type(settings)(**{**settings.__dict__, "seed": settings.seed + 1}), progress=False)
    assert first.shape == (30, 64, 64, 3) and first.dtype == np.uint8
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_flags_override_the_config_file(tmp_path):
    path = tmp_path / "gen.yaml"
    path.write_text(yaml.safe_dump({"steps": 10, "cfg": 2.0, "weights": "w"}))
    cfg = parse_args(["--config", str(path), "--image", "a.jpg", "--audio", "b.wav", "--steps", "3", "--lip-weight", "0"])
    assert (cfg.steps, cfg.cfg, cfg.weights, cfg.lip_weight) == (3, 2.0, "w", 0.0)
    with pytest.raises(ConfigError, match="--weights"):
        parse_args(["--image", "a.jpg", "--audio", "b.wav"])
    with pytest.raises(ConfigError, match="steps"):
        parse_args(["--weights", "w", "--image", "a.jpg", "--audio", "b.wav", "--set", "steps=0"])


def test_project_generate_config_documents_the_defaults():
    cfg = load_config(GenerateConfig, Path(__file__).resolve().parents[2] / "configs" / "generate.yaml")
    assert cfg == GenerateConfig()


def _perturb_temporal_modules(net, std: float) -> None:
    with torch.no_grad():
        for module in (net.denoising_unet.motion_modules, net.denoising_unet.audio_modules, net.audio_proj):
            for p in module.parameters():
                p.add_(torch.randn_like(p) * std)


def test_weights_without_trained_temporal_modules_generate_without_them(tiny_weights, portrait, short_speech):
    """A stage-1 export (behaviour.temporal false): the motion and audio modules never run."""
    cfg = GenerateConfig(weights=str(tiny_weights), image=str(portrait), audio=str(short_speech), steps=2, cfg=2.0,
                         progress=False)
    pipeline, reference, features, settings = prepare(cfg)
    net = pipeline.net
    torch.manual_seed(0)
    _perturb_temporal_modules(net, 0.05)  # the zero-initialised audio outputs too: every module has an effect
    temporal = pipeline(reference, features, settings, progress=False)
    net.behaviour = dataclasses.replace(net.behaviour, temporal=False)
    spatial = pipeline(reference, features, settings, progress=False)
    assert not np.array_equal(temporal, spatial)
    _perturb_temporal_modules(net, 1.0)
    assert np.array_equal(spatial, pipeline(reference, features, settings, progress=False))
