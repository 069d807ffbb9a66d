"""The sd15 preset has the paper's sizes (built on the meta device: no memory, no weights)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from model.presets import get_preset
from model.projections import AudioProj
from model.sizes import component_counts, main

HALLO_KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "hallo_keys" / "hallo_net_keys.json"


def hallo_parameter_counts() -> dict[str, int]:
    """Elements per component of Hallo's released net.pth (every key and shape, from the real file)."""
    counts: dict[str, int] = {}
    for key, shape in json.loads(HALLO_KEYS.read_text()).items():
        if key.endswith(".pe"):  # the motion modules' sinusoidal tables are buffers, not parameters
            continue
        part = key.split(".")[0]
        if part == "denoising_unet":
            kind = next((m for m in ("motion_modules", "audio_modules") if f".{m}." in key), "spatial")
            part = f"denoising_unet.{kind}"
        part = {"imageproj": "image_proj", "audioproj": "audio_proj"}.get(part, part)
        counts[part] = counts.get(part, 0) + math.prod(shape)
    return counts


def test_sd15_parameter_counts_are_hallos():
    counts = component_counts(get_preset("sd15"))
    assert counts == hallo_parameter_counts()
    assert counts["denoising_unet.spatial"] == 859_520_964  # SD-1.5 UNet
    assert counts["reference_unet"] == 859_520_964 - 12_164  # without conv_norm_out / conv_out
    assert counts["denoising_unet.motion_modules"] == 453_209_280  # AnimateDiff v2
    assert counts["audio_proj"] == 36_465_152
    assert sum(counts.values()) == 2_423_594_644  # net.pth's 2,424,802,964 elements less 42 pe tables


def test_sd15_audio_proj_takes_12_layer_windows():
    preset = get_preset("sd15")
    with torch.device("meta"):
        proj = AudioProj(preset.audio_window, preset.audio_layers, preset.audio_dim, 512, 32, 768)
        out = proj(torch.empty(1, preset.infer_frames, 5, 12, 768))
    assert out.shape == (1, 16, 32, 768)
    assert (preset.infer_frames, preset.infer_motion_frames, preset.train_frames, preset.train_motion_frames) == (16, 2, 14, 2)


def test_sizes_cli_prints_counts(capsys):
    assert main(["sd15"]) == 0
    out = capsys.readouterr().out
    assert "859,520,964" in out and "audio_proj" in out
