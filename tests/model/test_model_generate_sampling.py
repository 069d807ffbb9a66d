"""Samplers, presets and the per-pass savings of generation, through `python -m model.generate`'s main."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from model.weights_behaviour import HALLO, ModelBehaviour
from model.generate import main, prepare, sampling, sidecar
from model.generate_config import GenerateConfig
from model.net import HalloNet
from model.scheduler import PRESETS


@pytest.fixture(scope="module")
def one_clip_speech(short_speech, tmp_path_factory):
    """0.32 s of the real speech: 8 frames, one clip of the tiny model."""
    data, rate = sf.read(short_speech, dtype="float32")
    path = tmp_path_factory.mktemp("one_clip") / "speech.wav"
    sf.write(path, data[: int(0.32 * rate)], rate)
    return path


@pytest.fixture
def passes(monkeypatch) -> list[int]:
    """Records the timestep of every denoiser prediction (one per batch row)."""
    calls: list[int] = []
    denoise = HalloNet.denoise

    def recording(self, noisy, t, *args, **kwargs):
        calls.extend([int(t)] * noisy.shape[0])
        return denoise(self, noisy, t, *args, **kwargs)

    monkeypatch.setattr(HalloNet, "denoise", recording)
    return calls


@pytest.mark.parametrize("flags, sampler, steps, guided", [
    (["--preset", "hallo"], "ddim", 40, 40),  # Hallo's schedule: every step guided
    (["--preset", "balanced"], PRESETS["balanced"].sampler, PRESETS["balanced"].steps, None),
    (["--preset", "fast"], PRESETS["fast"].sampler, PRESETS["fast"].steps, None),
    (["--sampler", "ddim", "--steps", "3"], "ddim", 3, 2),  # 999, 666 guided (>= 600), 333 not
    (["--sampler", "dpmpp", "--steps", "3"], "dpmpp", 3, 2),
    (["--sampler", "unipc", "--steps", "3"], "unipc", 3, 2),
])
def test_each_sampler_and_preset_runs_and_records_what_ran(tiny_weights, portrait, one_clip_speech, tmp_path, passes,
                                                          flags, sampler, steps, guided):
    out = tmp_path / "out.mp4"
    assert main(["--weights", str(tiny_weights), "--image", str(portrait), "--audio", str(one_clip_speech),
                 "--out", str(out), "--set", "progress=false", *flags]) == 0
    record = json.loads(sidecar(out).read_text())
    expected_guided = guided if guided is not None else sum(t >= 600 for t in set(passes))
    assert (record["sampler"], record["steps"], record["guided_steps"]) == (sampler, steps, expected_guided)
    # the record counts what the denoiser did: one prediction per step, two on a guided one
    assert len(set(passes)) == steps and len(passes) == record["passes"] == steps + expected_guided
    assert record["clips"] == 1 and record["frames"] == 8 and record["passes_per_frame"] == record["passes"] / 8
    assert record["seconds_per_frame"] > 0 and record["settings"]["preset"] == flags[1] if flags[0] == "--preset" else True
    assert out.stat().st_size > 1000


def test_presets_are_fewer_passes_than_hallos():
    hallo = PRESETS["hallo"]
    assert (hallo.sampler, hallo.steps, hallo.guidance_min_timestep) == ("ddim", 40, 0)  # 80 passes per clip
    for name in ("balanced", "fast"):
        assert PRESETS[name].steps < hallo.steps
    assert 2 * PRESETS["fast"].steps * 5 <= 2 * hallo.steps  # >= 5x fewer passes even if every step were guided


def test_the_weights_choose_the_preset_and_flags_override_it():
    ours, hallo = ModelBehaviour(), dataclasses.replace(HALLO)
    assert sampling(GenerateConfig(), hallo) == ("hallo", {"sampler": "ddim", "steps": 40, "guidance_min_timestep": 0})
    name, fields = sampling(GenerateConfig(), ours)
    # balanced leaves the floor to the weights' behaviour (600 here), which the pipeline's plan reads
    assert name == ours.sampling_preset == "balanced" and fields["guidance_min_timestep"] is None
    # fast on converted Hallo weights guides their few steps as Hallo guides (every step)
    assert sampling(GenerateConfig(preset="fast"), hallo)[1]["guidance_min_timestep"] is None  # the weights': 0
    assert sampling(GenerateConfig(preset="hallo", sampler="unipc", steps=7, guidance_min_timestep=500), ours) == (
        "hallo", {"sampler": "unipc", "steps": 7, "guidance_min_timestep": 500})


def test_one_batched_pass_predicts_what_two_passes_do(tiny_weights, portrait, short_speech, passes):
    cfg = GenerateConfig(weights=str(tiny_weights), image=str(portrait), audio=str(short_speech), sampler="dpmpp",
                         steps=3, guidance_scale=3.5, guidance_min_timestep=0, progress=False)
    pipeline, reference, features, settings = prepare(cfg)
    torch.manual_seed(0)
    with torch.no_grad():  # the zero-initialised modules get weights: each condition has an effect
        for module in (pipeline.net.face_locator, pipeline.net.denoising_unet.audio_modules):
            for p in module.parameters():
                p.add_(torch.randn_like(p) * 0.05)
    batched = pipeline(reference, features, settings, progress=False)
    calls = len(passes)
    two = pipeline(reference, features, dataclasses.replace(settings, batched_guidance=False), progress=False)
    assert len(passes) == 2 * calls  # the same predictions, in twice the calls
    diff = np.abs(batched.astype(int) - two.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.05, (diff.max(), diff.mean())  # float rounding of other batch shapes
    unguided = pipeline(reference, features, dataclasses.replace(settings, guidance_scale=1.0), progress=False)
    assert np.abs(unguided.astype(int) - batched.astype(int)).mean() > 1  # and guidance does change the video


def test_compile_compiles_the_denoiser(tiny_weights, portrait, short_speech, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(type(self).__name__))
    prepare(GenerateConfig(weights=str(tiny_weights), image=str(portrait), audio=str(short_speech), compile=True))
    assert compiled == ["DenoisingUNet3D"]
