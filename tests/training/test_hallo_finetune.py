"""Fine-tuning Hallo's released weights, end to end on CPU: convert a (tiny, random) Hallo net.pth, run
stage 2 from it on curated shards, generate from the export."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import av
import pytest
import soundfile as sf
import torch

from foundation.audio_features import num_frames
from foundation.config import load_config
from hallo_fixture import HALLO_TINY, write_standin_base
from model.weights_behaviour import HALLO
from model.weights_cli import main as weights_cli
from model.weights import load_net, read_index
from stagerun import ROOT, losses, run_stage, stage_overrides
from training.config import TrainConfig

TRAINED_IN_STAGE2 = ("audio_proj.", "denoising_unet.audio_modules.", "denoising_unet.motion_modules.")


@pytest.fixture(scope="module")
def hallo_base(tmp_path_factory) -> Path:
    """Stand-in bases whose wav2vec2 has the sizes the fixture's audio projection takes."""
    return write_standin_base(HALLO_TINY, tmp_path_factory.mktemp("hallo_base"))


@pytest.fixture(scope="module")
def hallo_shards(fixture_by_variant, hallo_base, tmp_path_factory) -> dict[str, list[str]]:
    """One real fixture clip curated with those bases (its audio features fit the converted model)."""
    from curation.config import CurationConfig
    from curation.pipeline import process_source_safely
    from curation.sources import parse_source
    from foundation.config import load_config

    out = tmp_path_factory.mktemp("hallo_curated")
    cfg = load_config(CurationConfig, None, [f"annotations.wav2vec2_dir={hallo_base / 'wav2vec2'}",
                                             f"annotations.insightface_dir={hallo_base / 'insightface' / 'models'}"])
    rows = process_source_safely(parse_source(str(fixture_by_variant["in_sync"].path), out), out, cfg)
    shards = sorted({str(out / "shards" / r.shard) for r in rows if r.shard})
    assert shards
    return {"train": shards, "validation": shards}


@pytest.fixture(scope="module")
def hallo_weights(hallo_base, tmp_path_factory) -> Path:
    """The fixture's net.pth converted by the command's own entry point (hallo-weights hallo ...)."""
    weights = tmp_path_factory.mktemp("hallo") / "weights"
    args = ["hallo", "--base", str(hallo_base), "--net", str(HALLO_TINY / "net.pth"), "--to", str(weights), "--preset", "tiny"]
    assert weights_cli(args) == 0
    assert read_index(weights).behaviour == HALLO
    return weights


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_stage1_starts_from_converted_weights_with_their_behaviour(hallo_weights, hallo_base) -> None:
    from training.stage1 import Stage1

    cfg = load_config(TrainConfig, None, [f"model.init_from={hallo_weights}", f"model.pretrained_dir={hallo_base}",
                                          "model.behaviour={motion_in_plain_blocks: true}", "run.precision=fp32"])
    stage = Stage1(cfg, torch.device("cpu"))
    net = stage.module.net
    assert net.behaviour == stage.behaviour == dataclasses.replace(HALLO, motion_in_plain_blocks=True, temporal=False)
    converted = load_net(hallo_weights).state_dict()
    assert all(torch.equal(v, converted[k]) for k, v in net.state_dict().items())
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("reference_unet.", "denoising_unet.spatial.", "face_locator.", "image_proj."))
                             for n in trainable)


def test_convert_hallo_fine_tune_stage2_and_generate(hallo_weights, hallo_base, hallo_shards, tmp_path) -> None:
    weights = hallo_weights
    out = tmp_path / "stage2"
    sets = stage_overrides(hallo_shards, hallo_base, out, **{"model.init_from": str(weights), "run.max_steps": 2,
                                                              "run.validate_every": 0})
    result = run_stage("stage2", sets)
    assert result.returncode == 0, result.stderr[-4000:]
    assert sorted(step for _, step in losses(result.stderr)) == [1, 2]
    # trained with Hallo's behaviours, and says so; but its shards were curated without a vocal separator
    # (none in ./pretrained), so generation feeds the mixture as training did
    assert read_index(out / "export").behaviour == dataclasses.replace(HALLO, separate_vocals=False)

    before, after = load_net(weights), load_net(out / "export")
    changed = {name for (name, a), b in zip(before.named_parameters(), after.parameters()) if not a.equal(b)}
    assert changed and all(name.startswith(TRAINED_IN_STAGE2) for name in changed)
    assert any(name.startswith("denoising_unet.motion_modules.") for name in changed)  # Hallo's, not reloaded
    idle = {f"denoising_unet.motion_modules.{kind}.{i}." for kind, i in (("down_blocks", 3), ("up_blocks", 0))}
    assert not any(name.startswith(tuple(idle)) for name in changed)  # Hallo never runs those: they stay as they are

    data, rate = sf.read(ROOT / "examples" / "assets" / "speech_0930.wav", dtype="float32")
    speech = tmp_path / "speech.wav"
    sf.write(speech, data[: int(1.1 * rate)], rate)  # 28 frames: not a whole number of 16-frame clips
    video = tmp_path / "gen.mp4"
    gen = _run("-m", "model.generate", "--weights", str(out / "export"), "--image",
               str(ROOT / "examples" / "assets" / "astronaut.jpg"), "--audio", str(speech), "--out", str(video),
               "--steps", "1", "--guidance-scale", "3.5")
    assert gen.returncode == 0, gen.stderr[-3000:]
    with av.open(str(video)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == num_frames(int(1.1 * rate) * 16000 // rate) == 28  # padded to 32 for wav2vec2, trimmed back
