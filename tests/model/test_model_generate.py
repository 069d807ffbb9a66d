"""End-to-end generation with the tiny stand-ins: the real loading, preprocessing and muxing code."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from foundation.audio_features import num_frames
from model.generate import main, parse_args, prepare
from model.generate_config import GenerateConfig
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
    path.write_text(yaml.safe_dump({"steps": 10, "guidance_scale": 2.0, "weights": "w"}))
    cfg = parse_args(["--config", str(path), "--image", "a.jpg", "--audio", "b.wav", "--steps", "3", "--lip-weight", "0"])
    assert (cfg.steps, cfg.guidance_scale, cfg.weights, cfg.lip_weight) == (3, 2.0, "w", 0.0)
    with pytest.raises(ConfigError, match="--weights"):
        parse_args(["--image", "a.jpg", "--audio", "b.wav"])
    with pytest.raises(ConfigError, match="steps"):
        parse_args(["--weights", "w", "--image", "a.jpg", "--audio", "b.wav", "--set", "steps=-1"])


@pytest.mark.parametrize("args, message", [
    (["--cfg", "2"], "config key 'cfg' is now 'guidance_scale'"),
    (["--set", "cfg_min_timestep=0"], "config key 'cfg_min_timestep' is now 'guidance_min_timestep'"),
    (["--cfg-min-timestep", "-1"], "config key 'cfg_min_timestep' is now 'guidance_min_timestep'"),
    (["--steps", "0"], "config key 'steps' must be in [1, 1000], or null for the preset's, got 0"),
    (["--set", "motion_frames=-1"], "config key 'motion_frames' must be >= 0, or null for the weights folder's value"),
    (["--set", "clip_frames=0"], "config key 'clip_frames' must be >= 1, or null for the weights folder's value"),
])
def test_old_guidance_keys_and_inherit_markers_are_refused_naming_the_new_spelling(args, message, tmp_path, capsys):
    base = ["--weights", "w", "--image", "a.jpg", "--audio", "b.wav"]
    with pytest.raises(ConfigError) as err:
        parse_args([*base, *args])
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    old = tmp_path / "old.yaml"
    old.write_text("cfg: 3.5\n")  # a config file written before the rename
    assert main([*base, "--config", str(old)]) == 2
    assert "error: config key 'cfg' is now 'guidance_scale'" in capsys.readouterr().err


def test_null_takes_the_weights_and_the_preset_s_values():
    cfg = parse_args(["--weights", "w", "--image", "a.jpg", "--audio", "b.wav", "--set", "steps=null",
                      "--set", "guidance_min_timestep=null", "--set", "motion_frames=0"])
    assert (cfg.steps, cfg.guidance_min_timestep, cfg.clip_frames, cfg.motion_frames) == (None, None, None, 0)


def test_project_generate_config_documents_the_defaults():
    cfg = load_config(GenerateConfig, Path(__file__).resolve().parents[2] / "configs" / "generate.yaml")
    assert cfg == GenerateConfig()


@pytest.fixture
def no_generation(monkeypatch) -> list:
    """Replaces the heavy part of generation: records the inputs the checks passed on."""
    import model.generate

    calls: list = []
    monkeypatch.setattr(model.generate, "generate", lambda cfg, inputs: calls.append(inputs) or Path(cfg.out))
    return calls


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err.splitlines()[-1]


def test_inputs_are_checked_in_one_line_before_any_model_loads(tiny_weights, portrait, short_speech, tmp_path,
                                                                no_generation, capsys):
    good = {"--weights": str(tiny_weights), "--image": str(portrait), "--audio": str(short_speech),
            "--out": str(tmp_path / "o.mp4")}
    broken = tmp_path / "broken"
    shutil.copytree(tiny_weights, broken)
    shutil.rmtree(broken / "audio_proj")
    cases = {
        "--weights": (str(tmp_path / "none"), f"config key 'weights': {tmp_path / 'none'} does not exist"),
        "--image": (str(short_speech), f"config key 'image': cannot read an image from {short_speech}"),
        "--audio": (str(portrait), f"config key 'audio': {portrait} has no audio stream"),
        "--steps": ("-1", "config key 'steps' must be in [1, 1000], or null for the preset's, got -1"),
        "--preset": ("slow", "config key 'preset'"),
        "--sampler": ("euler", "config key 'sampler'"),
        "--guidance-scale": ("-1", "config key 'guidance_scale' must be >= 0, got -1.0"),
        "--lip-weight": ("-0.5", "config key 'lip_weight' must be >= 0, got -0.5"),
        "--device": ("tpu", "config key 'device': 'tpu' is not a torch device"),
    }
    for flag, (value, message) in cases.items():
        assert main([*(a for k, v in {**good, flag: value}.items() for a in (k, v))]) == 2
        assert _error_line(capsys).startswith(f"error: {message}")
    assert main([*(a for k, v in {**good, "--weights": str(broken)}.items() for a in (k, v)), "--set", "clip_frames=-2"]) == 2
    assert "'clip_frames' must be >= 1" in _error_line(capsys)
    assert main([*(a for k, v in {**good, "--weights": str(broken)}.items() for a in (k, v))]) == 2
    assert f"{broken / 'audio_proj'} does not exist" in _error_line(capsys)
    assert not no_generation


def test_an_image_without_a_face_needs_allow_no_face(tiny_weights, short_speech, tmp_path, no_generation, capsys):
    faceless = Path(__file__).resolve().parents[2] / "examples" / "assets" / "coffee.jpg"
    args = ["--weights", str(tiny_weights), "--image", str(faceless), "--audio", str(short_speech), "--out", str(tmp_path / "o.mp4")]
    assert main(args) == 2
    assert _error_line(capsys) == (f"error: no face found in {faceless}: generation animates a portrait; pass "
                                   "--allow-no-face to animate a centre crop of the image anyway")
    assert main([*args, "--allow-no-face"]) == 0
    assert no_generation[0].portrait.landmarks is None and no_generation[0].portrait.image.shape == (64, 64, 3)


def test_print_config_lists_every_key(capsys):
    assert main(["--print-config"]) == 0
    out = capsys.readouterr().out
    assert "| `allow_no_face` | `False` |" in out and "| `steps` | `None` |" in out and "[1, 1000]" in out


def test_every_number_of_the_generation_and_weights_configs_has_a_range():
    from dataclasses import fields

    from model.weights import WeightsIndex

    for cls in (GenerateConfig, WeightsIndex):
        numeric = [f for f in fields(cls) if f.type in ("int", "float")]
        assert numeric and all(f.metadata["low"] is not None or f.metadata["high"] is not None for f in numeric), cls


def _perturb_temporal_modules(net, std: float) -> None:
    with torch.no_grad():
        for module in (net.denoising_unet.motion_modules, net.denoising_unet.audio_modules, net.audio_proj):
            for p in module.parameters():
                p.add_(torch.randn_like(p) * std)


def test_weights_without_trained_temporal_modules_generate_without_them(tiny_weights, portrait, short_speech):
    """A stage-1 export (behaviour.temporal false): the motion and audio modules never run."""
    cfg = GenerateConfig(weights=str(tiny_weights), image=str(portrait), audio=str(short_speech), steps=2, guidance_scale=2.0,
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


@pytest.mark.parametrize("flag, guided", [(None, [999, 749]), (0, [999, 749, 499, 249]), (1000, [])])
def test_guidance_runs_on_the_steps_at_or_above_the_minimum_timestep(tiny_weights, portrait, short_speech, flag, guided):
    """The weights' behaviour (600 for weights trained here) unless the setting says otherwise; 0 is Hallo's sampler."""
    cfg = GenerateConfig(weights=str(tiny_weights), image=str(portrait), audio=str(short_speech), steps=4,
                         guidance_scale=3.5, guidance_min_timestep=flag, progress=False, clip_frames=30)
    pipeline, reference, features, settings = prepare(cfg)
    assert pipeline.plan(settings).guidance_min_timestep == (
        read_index(tiny_weights).behaviour.guidance_min_timestep if flag is None else flag)
    calls: list[int] = []
    denoise = pipeline.net.denoise

    def recording(noisy, t, *args):
        calls.extend([int(t)] * noisy.shape[0])  # guidance's two branches run as one batch of two
        return denoise(noisy, t, *args)

    pipeline.net.denoise = recording
    pipeline(reference, features, settings, progress=False)
    steps = [999, 749, 499, 249]  # one clip; the conditional branch runs on every step, the unconditional on some
    assert sorted(set(calls), reverse=True) == steps
    assert [t for t in steps if calls.count(t) == 2] == guided and all(calls.count(t) <= 2 for t in steps)
