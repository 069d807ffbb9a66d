"""The audio encoder is a recorded choice from curation to generation: tiny random encoders built from the real
transformers classes (the tiny wav2vec2 stand-in, 32 wide x 4 layers, and a HuBERT 48 wide x 2 layers) are
recorded by curation, refused by training when shards mix them or do not fit the model, train a model of
their own shape end to end, and the export refuses generation with another encoder."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import webdataset as wds

from curation.config import CurationConfig
from curation.speech_sync_annotate import preflight as curation_preflight
from curation.manifest_parts import PartInfo
from curation.pipeline import process_source_safely
from curation.sources import parse_source
from foundation import schema
from foundation.config import ConfigError, load_config
from model.generate_config import GenerateConfig
from model.net import COMPONENT_CLASSES
from model.preflight import check_generation
from model.weights_cli import main as weights_cli
from model.presets import TINY_WAV2VEC2
from examples.standins import write_audio_encoder
from model.weights import read_index
from training import loop
from training.stage1 import Stage1

from stagerun import ROOT, losses, run_stage, stage_overrides

WIDE = {**TINY_WAV2VEC2, "hidden_size": 48, "num_hidden_layers": 2}  # another width than the default stand-in's


def _hubert(folder: Path, seed: int) -> Path:
    import torch

    torch.manual_seed(seed)
    write_audio_encoder(folder, WIDE, "hubert")
    return folder


@pytest.fixture(scope="module")
def hubert(tmp_path_factory) -> Path:
    return _hubert(tmp_path_factory.mktemp("enc") / "hubert", 0)


def _curation_config(tiny_pretrained: Path, encoder: Path) -> CurationConfig:
    return curation_preflight(load_config(CurationConfig, None, [
        f"pretrained_dir={tiny_pretrained}", f"annotations.wav2vec2_dir={encoder}",
        f"annotations.insightface_dir={tiny_pretrained / 'insightface' / 'models'}"]))


@pytest.fixture(scope="module")
def hubert_shards(hubert, tiny_pretrained, fixture_by_variant, tmp_path_factory) -> list[str]:
    out = tmp_path_factory.mktemp("curated_hubert")
    rows = process_source_safely(parse_source(str(fixture_by_variant["in_sync"].path), out), out,
                                 _curation_config(tiny_pretrained, hubert))
    shards = sorted({str(out / "shards" / r.shard) for r in rows if r.shard})
    assert shards
    return shards


def _first(shard: str) -> dict:
    return next(iter(wds.WebDataset(shard, shardshuffle=False)))


def test_curation_records_each_encoder_and_its_weights_change_the_fingerprint(
        hubert, hubert_shards, curated_shards, tiny_pretrained, tmp_path) -> None:
    for shard, (kind, layers, width) in [(hubert_shards[0], ("hubert", 2, 48)),
                                         (curated_shards["train"][0], ("wav2vec2", 4, 32))]:
        sample = _first(shard)
        record = schema.ClipMeta.from_json(sample["json"]).audio_encoder
        assert (record["model_type"], record["layers"], record["width"]) == (kind, layers, width)
        assert len(record["sha256"]) == 64
        assert schema.decode_npy(sample[schema.KEY_AUDIO_FEATURES]).shape[1:] == (layers, width)
    # Same folder, other weights: another results fingerprint (a re-run would not mix the two).
    copy = tmp_path / "encoder"
    shutil.copytree(hubert, copy)
    before = PartInfo.of(_curation_config(tiny_pretrained, copy)).fingerprint
    _hubert(copy, seed=1)
    assert PartInfo.of(_curation_config(tiny_pretrained, copy)).fingerprint != before
    # data2vec-audio loads through the same code, its shape read from its config.
    write_audio_encoder(tmp_path / "data2vec", WIDE, "data2vec-audio")
    assert _curation_config(tiny_pretrained, tmp_path / "data2vec").annotations.encoder["model_type"] == "data2vec-audio"


@pytest.fixture
def started(monkeypatch) -> list:
    calls: list = []
    monkeypatch.setattr(loop, "train", lambda stage, cfg: calls.append(cfg))
    return calls


def _preflight_error(shards: list[str], tiny_pretrained: Path, tmp_path: Path, capsys, *extra: str) -> tuple[int, str]:
    sets = {"data.shards": "[" + ",".join(shards) + "]", "model.pretrained_dir": str(tiny_pretrained),
            "run.output_dir": str(tmp_path / "run"), "run.device": "cpu", "run.precision": "fp32"}
    argv = [a for key, value in sets.items() for a in ("--set", f"{key}={value}")]
    code = loop.main(Stage1, [*argv, *(a for e in extra for a in ("--set", e))])
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return code, err.splitlines()[-1] if err else ""


def test_training_refuses_shards_of_two_encoders_or_of_another_one(
        hubert, hubert_shards, curated_shards, tiny_pretrained, tmp_path, started, capsys) -> None:
    code, line = _preflight_error([*curated_shards["train"], *hubert_shards], tiny_pretrained, tmp_path, capsys)
    assert code == 2 and "hold the features of 2 audio encoders" in line
    assert str(hubert) in line and str(tiny_pretrained / "wav2vec2") in line
    code, line = _preflight_error(hubert_shards, tiny_pretrained, tmp_path, capsys)
    assert code == 2 and f"made by {hubert}" in line and f"built for {tiny_pretrained / 'wav2vec2'}" in line
    code, line = _preflight_error(hubert_shards, tiny_pretrained, tmp_path, capsys, f"model.audio_encoder={hubert}")
    assert code == 0 and started[-1].model.audio_encoder == str(hubert)
    # Stage 1 from the bases builds the audio projection for that encoder.
    stage = Stage1(started[-1], torch.device("cpu"))
    audio_proj = stage.module.net.audio_proj.config
    assert (audio_proj.num_layers, audio_proj.feature_dim) == (2, 48) and stage.preset.audio_dim == 48


def test_a_wider_encoder_trains_end_to_end_and_its_model_refuses_other_encoders(
        hubert, hubert_shards, tiny_pretrained, tmp_path) -> None:
    # The model built for the encoder from the bases (what stage 1 builds), then trained with its features.
    assert weights_cli(["init", "--base", str(tiny_pretrained), "--preset", "tiny", "--audio-encoder", str(hubert),
                            "--to", str(tmp_path / "init")]) == 0
    shards = {"train": hubert_shards, "validation": hubert_shards}
    steps = {"run.max_steps": 1, "run.validate_every": 0, "run.checkpoint_every": 1}
    # model.audio_encoder left unset: the encoder init_from records
    stage2 = run_stage("stage2", stage_overrides(shards, tiny_pretrained, tmp_path / "s2",
                                                 **{**steps, "model.init_from": str(tmp_path / "init")}))
    assert stage2.returncode == 0, stage2.stderr[-3000:]
    assert sorted(step for _, step in losses(stage2.stderr)) == [1]
    export = tmp_path / "s2" / "export"
    index = read_index(export)
    recorded = schema.ClipMeta.from_json(_first(hubert_shards[0])["json"]).audio_encoder
    assert index.audio_encoder["sha256"] == recorded["sha256"] and index.wav2vec2 == str(hubert)
    audio_proj = COMPONENT_CLASSES["audio_proj"].load_config(export / "audio_proj")
    assert (audio_proj["num_layers"], audio_proj["feature_dim"]) == (2, 48)

    cfg = GenerateConfig(weights=str(export), image=str(ROOT / "examples/assets/astronaut.jpg"),
                         audio=str(ROOT / "examples/assets/speech_0930.wav"), out=str(tmp_path / "out.mp4"))
    assert check_generation(cfg).audio_encoder == hubert.resolve()
    with pytest.raises(ConfigError, match="another shape"):
        check_generation(GenerateConfig(**{**vars(cfg), "audio_encoder": str(tiny_pretrained / "wav2vec2")}))
    other = _hubert(tmp_path / "other_hubert", seed=3)  # same shape, other weights
    with pytest.raises(ConfigError, match="is not the one .* was trained on"):
        check_generation(GenerateConfig(**{**vars(cfg), "audio_encoder": str(other)}))
    allowed = check_generation(GenerateConfig(**{**vars(cfg), "audio_encoder": str(other), "allow_other_audio_encoder": True}))
    assert allowed.audio_encoder == other


def test_the_latent_cache_keeps_the_record_and_refuses_a_shard_curated_again(hubert_shards, tiny_pretrained,
                                                                             tmp_path) -> None:
    from dataclasses import replace

    from training.data import CacheMismatch, shard_with_latents
    from training.latent_cache.format import KEY_INFO, vae_identity
    from training.latent_cache.read import LatentFrames

    from stagerun import build_cache

    cache = build_cache(hubert_shards[:1], tiny_pretrained / "vae", tmp_path / "cache")
    raw = next(shard_with_latents(hubert_shards[0], str(cache)))
    meta = schema.ClipMeta.from_json(raw["json"])
    assert json.loads(raw[KEY_INFO])["audio_encoder"] == meta.audio_encoder
    frames = LatentFrames(64, vae_identity(str(tiny_pretrained / "vae")))
    assert frames(raw, meta, 0, [], [1])["target_mean"].shape[0] == 1
    other = replace(meta, audio_encoder={**meta.audio_encoder, "sha256": "0" * 64})
    with pytest.raises(CacheMismatch, match="rebuild it"):
        frames(raw, other, 0, [], [1])
