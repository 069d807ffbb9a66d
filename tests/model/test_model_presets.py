"""The sd15 preset has the paper's sizes (built on the meta device: no memory, no weights)."""
from __future__ import annotations

import torch

from model.presets import component_counts, get_preset, main
from model.projections import AudioProj


def test_sd15_parameter_counts():
    counts = component_counts(get_preset("sd15"))
    assert counts["reference_unet"] == counts["denoising_unet.spatial"] == 859_520_964  # SD-1.5 UNet
    assert counts["denoising_unet.motion_modules"] == 453_209_280  # AnimateDiff v2
    assert counts["audio_proj"] == 36_465_152
    assert 380e6 < counts["denoising_unet.audio_modules"] < 400e6  # 16 modules, ~390M


def test_sd15_audio_proj_takes_12_layer_windows():
    preset = get_preset("sd15")
    with torch.device("meta"):
        proj = AudioProj(preset.audio_window, preset.audio_layers, preset.audio_dim, 512, 32, 768)
        out = proj(torch.empty(1, preset.infer_frames, 5, 12, 768))
    assert out.shape == (1, 16, 32, 768)
    assert (preset.infer_frames, preset.infer_motion_frames, preset.train_frames, preset.train_motion_frames) == (16, 2, 14, 2)


def test_meta_cli_prints_counts(capsys):
    assert main(["sd15", "--meta"]) == 0
    out = capsys.readouterr().out
    assert "859,520,964" in out and "audio_proj" in out
