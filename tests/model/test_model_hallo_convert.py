"""`hallo-weights hallo`: strict conversion of Hallo's net.pth, at full size and on bad files."""
from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel
from transformers import Wav2Vec2Config

from hallo_fixture import HALLO_TINY, write_config_base
from model.hallo_checkpoint import hallo_to_ours, ours_to_hallo, read_hallo_net
from model.net import COMPONENTS
from model.presets import get_preset
from model.pretrained import hallo_modules
from model.weights_cli import main

HALLO_KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "hallo_keys" / "hallo_net_keys.json"
PE = "denoising_unet.up_blocks.2.motion_modules.1.temporal_transformer.transformer_blocks.0.attention_blocks.1.pos_encoder.pe"
AUDIO_PROJ_IN = "denoising_unet.down_blocks.1.audio_modules.0.proj_in.weight"


def write_sd15_base(base: Path) -> Path:
    """The configs of SD-1.5's UNet and wav2vec2-base-960h (no weights: the conversion reads configs only)."""
    with torch.device("meta"):
        UNet2DConditionModel(**get_preset("sd15").unet).save_config(base / "unet")
    Wav2Vec2Config().save_pretrained(base / "wav2vec2")  # wav2vec2-base: 12 layers x 768
    return base


def test_a_full_size_hallo_net_pth_fills_the_sd15_model_exactly(tmp_path):
    """Every key and shape of the real net.pth, as stride-0 tensors (a few kB on disk, nothing in memory)."""
    shapes = json.loads(HALLO_KEYS.read_text())
    assert len(shapes) == 2656
    standin = OrderedDict((key, torch.zeros(()).expand(shape)) for key, shape in shapes.items())
    torch.save(standin, tmp_path / "net.pth")
    assert (tmp_path / "net.pth").stat().st_size < 2_000_000

    state = read_hallo_net(tmp_path / "net.pth")  # the conversion's own reader and loader, meta-built model
    modules, preset = hallo_modules(state, write_sd15_base(tmp_path / "base"), get_preset("sd15"))
    ours = {f"{name}.{k}": v for name in COMPONENTS for k, v in getattr(modules, name).state_dict().items()}
    assert not any(v.is_meta for v in ours.values())
    used = [hallo_to_ours(key) for key in shapes]
    assert set(used) == set(ours)  # nothing left over on either side
    pe = [key for key in shapes if key.endswith(".pe")]
    assert len(used) - len(set(used)) == len(pe) // 2 == 21  # only the second copy of each positional table repeats
    assert all(ours_to_hallo(key) in shapes for key in ours)
    assert sum(v.numel() for v in ours.values()) + sum(math.prod(shapes[k]) for k in pe) // 2 == 2_424_802_964
    assert (preset.audio_window, preset.audio_hidden, preset.audio_tokens, preset.image_tokens) == (2, 512, 32, 4)
    assert preset.face_locator_channels == (16, 32, 64, 128) and preset.motion_max_len == 32


@pytest.fixture(scope="module")
def tiny_net_state() -> dict[str, torch.Tensor]:
    return torch.load(HALLO_TINY / "net.pth", map_location="cpu", weights_only=True)


class NotATensor:
    pass


def _bad_file(kind: str, state: dict[str, torch.Tensor], path: Path) -> str:
    """Write a broken net.pth; returns what the error line must name."""
    state = OrderedDict(state)
    if kind == "truncated":
        data = (HALLO_TINY / "net.pth").read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return "truncated"
    if kind == "not_hallo":  # an SD UNet state dict: Hallo's reference net without its prefix
        state = OrderedDict((k[len("reference_unet."):], v) for k, v in state.items() if k.startswith("reference_unet."))
        expect = f"unexpected key '{next(iter(state))}'"
    elif kind == "wrong_shape":
        state[AUDIO_PROJ_IN] = torch.zeros(64, 64, 1, 1)
        expect = AUDIO_PROJ_IN
    elif kind == "missing":
        del state[AUDIO_PROJ_IN]
        expect = f"'{AUDIO_PROJ_IN}' is missing"
    elif kind == "pe_differs":
        state[PE] = state[PE] + 1e-3
        expect = PE
    else:  # an arbitrary pickled object: weights_only refuses to build it
        state["extra"] = NotATensor()
        torch.save(state, path)
        return "readable"
    torch.save(state, path)
    return expect


@pytest.mark.parametrize("kind", ["truncated", "not_hallo", "wrong_shape", "missing", "pe_differs", "pickle"])
def test_a_bad_net_pth_exits_2_with_one_line_naming_the_problem(kind, tiny_net_state, tmp_path, capsys):
    base = write_config_base(HALLO_TINY, tmp_path / "base")
    expect = _bad_file(kind, tiny_net_state, tmp_path / "net.pth")
    capsys.readouterr()
    assert main(["hallo", "--base", str(base), "--net", str(tmp_path / "net.pth"), "--to", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expect in err[0], err
    assert not (tmp_path / "w").exists() and not list(tmp_path.glob(".w*"))  # nothing half-written


def test_an_existing_weights_folder_is_not_overwritten(tmp_path, capsys):
    base = write_config_base(HALLO_TINY, tmp_path / "base")
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "keep.txt").write_text("mine")
    assert main(["hallo", "--base", str(base), "--net", str(HALLO_TINY / "net.pth"), "--to", str(tmp_path / "w")]) == 2
    assert "not empty" in capsys.readouterr().err and (tmp_path / "w" / "keep.txt").read_text() == "mine"
