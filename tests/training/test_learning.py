"""The pipeline learns: curate one fixture clip, cache its latents, overfit stage 1 and stage 2 on them
(configs/learn/), and generate the clip back from its first frame and its audio with `python -m model.generate`.

This guards every change to the model, training and generation: each of them can break learning
(or the match between what training teaches and what generation asks) without any shape changing.
Training reads the latent cache, as `make demo` does, which takes a quarter off every step; that the
cached steps compute the pixel path's losses is tests/training/test_latents.py's job.
"""
from __future__ import annotations

import logging

import pytest
import torch

from examples import fixtures
from curation.config import CurationConfig
from curation.pipeline import process_source_safely
from curation.sources import parse_source
from foundation.config import load_config
from model.presets import get_preset
from model.pretrained import base_paths
from model.weights_cli import main as weights_cli
from model.weights import load_vae, read_index
from examples.learning import RealClip, generate, psnr

from stagerun import build_cache, losses, run_stage

log = logging.getLogger(__name__)

CLIP_S = 3.0  # a short clip overfits sooner; it still opens and shuts the mouth many times
GENERATE = ("--sampler", "ddim", "--steps", "10", "--seed", "1", "--set", "cpu_threads=1")  # 10 DDIM steps do as well as 20 here


@pytest.fixture(scope="module")
def one_clip(annotation_overrides, tmp_path_factory) -> list[str]:
    work = tmp_path_factory.mktemp("one_clip")
    info = fixtures.generate("in_sync", work / "in_sync.mp4", duration_s=CLIP_S)
    # 128-px clips: the tiny model trains at 64 px, and decoding 512-px frames would cost more than the steps
    cfg = load_config(CurationConfig, None, [*annotation_overrides, "faces.output_size=128"])
    rows = process_source_safely(parse_source(str(info.path), work), work, cfg)
    shards = sorted({str(work / "shards" / row.shard) for row in rows if row.shard})
    assert len(shards) == 1, rows
    return shards


def _train(stage: str, shards: list[str], latents, base, out, **extra) -> dict:
    sets = {"data.shards": "[" + ",".join(shards) + "]", "data.latents": str(latents), "model.pretrained_dir": str(base),
            "run.output_dir": str(out), **extra}
    result = run_stage(stage, [a for k, v in sets.items() for a in ("--set", f"{k}={v}")], configs="learn")
    assert result.returncode == 0, result.stderr[-4000:]
    return losses(result.stderr)


def _mean(losses: dict, start: int, stop: int | None) -> float:
    values = [loss for _, loss in sorted(losses.items(), key=lambda item: item[0][1])][start:stop]
    return sum(values) / len(values)


def test_the_tiny_vae_standin_reconstructs_curated_clips_and_its_latents_carry_the_image(curated_shards, tiny_pretrained):
    """A random VAE reconstructs at about 10 dB and its posterior noise swamps its latents: nothing could learn."""
    vae = load_vae(base_paths(tiny_pretrained)["vae"])
    real = RealClip.from_shards(curated_shards["validation"], get_preset("tiny").resolution)  # as training decodes it
    pixels = torch.from_numpy(real.frames).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        posterior = vae.encode(pixels).latent_dist
        decoded = vae.decode(posterior.mode()).sample.clamp(-1, 1)
    restored = ((decoded.permute(0, 2, 3, 1) + 1) * 127.5).round().byte().numpy()
    assert psnr(restored, real.frames) > 27
    scale = vae.config.scaling_factor
    assert 0.5 < float(posterior.mean.std()) * scale < 2  # scaled latents of about unit variance, as SD's
    assert float(posterior.std.mean()) < 0.02 * float(posterior.mean.std())  # training's sampled latents are the image


@pytest.mark.slow
def test_overfit_one_clip_then_generate_it_back(one_clip, tiny_pretrained, tmp_path) -> None:
    real = RealClip.from_shards(one_clip, get_preset("tiny").resolution)
    image, audio = real.write_inputs(tmp_path / "inputs")
    untrained = tmp_path / "untrained"
    assert weights_cli(["init", "--base", str(tiny_pretrained), "--preset", "tiny", "--to", str(untrained)]) == 0
    latents = build_cache(one_clip, base_paths(tiny_pretrained)["vae"], tmp_path / "latents")
    stage1 = _train("stage1", one_clip, latents, tiny_pretrained, tmp_path / "stage1")
    stage2 = _train("stage2", one_clip, latents, tiny_pretrained, tmp_path / "stage2",
                    **{"model.init_from": str(tmp_path / "stage1" / "export")})
    behaviour1 = read_index(tmp_path / "stage1" / "export").behaviour
    behaviour2 = read_index(tmp_path / "stage2" / "export").behaviour
    assert not behaviour1.temporal and behaviour2.temporal
    assert behaviour2.uncond_face_region == "drop"  # trained without the face-locator features, as guidance runs

    def run(weights, name: str, *args: str):
        return real.compare(generate(weights, image, audio, tmp_path / f"{name}.mp4", *args, *GENERATE))

    trained = tmp_path / "stage2" / "export"
    before = run(untrained, "untrained", "--guidance-scale", "1")
    plain = run(trained, "cfg1", "--guidance-scale", "1")
    default = run(trained, "cfg3.5", "--guidance-scale", "3.5")  # on the steps at timestep >= 600, the weights' default
    every_step = run(trained, "cfg3.5_every_step", "--guidance-scale", "3.5", "--guidance-min-timestep", "0")  # as Hallo samples
    still = real.compare(real.still())
    report = (f"stage 1 loss {_mean(stage1, 0, 50):.3f} -> {_mean(stage1, -50, None):.3f}, stage 2 loss "
              f"{_mean(stage2, 0, 50):.3f} -> {_mean(stage2, -50, None):.3f}\nuntrained: {before}\nfirst frame "
              f"repeated: {still}\ntrained, cfg 1: {plain}\ntrained, cfg 3.5 (default): {default}\n"
              f"trained, cfg 3.5 on every step: {every_step}")
    log.info("%s", report)
    assert plain.psnr > before.psnr + 10, report  # untrained weights: about 8 dB
    assert plain.psnr > still.psnr + 2, report  # the still ignores the mouth and the head's sway
    # The fixture's mouth shapes what is said (examples.articulation) and moves less than the head: the
    # repeated frame is a strong baseline in the lip box (21.5 dB), and the trained mouth beats it by 2.9 dB.
    assert plain.mouth_psnr > still.mouth_psnr + 2.5, report
    assert plain.mouth_corr > 0.5, report  # the mouth opens and shuts with the real one
    # Guidance asks for the unconditional branch training taught, on the noisier steps only: the mouth
    # follows the real one more closely and the frames stay as close to the clip (README, Guidance
    # matches training). Guiding every step too pushes the nearly clean steps past the overfit model's
    # conditional prediction, which is the exact target here: 4.6 dB lost.
    assert default.mouth_corr > plain.mouth_corr, report
    assert default.psnr > plain.psnr - 0.3 and default.mouth_psnr > plain.mouth_psnr - 0.3, report
    assert every_step.psnr < default.psnr - 2, report
