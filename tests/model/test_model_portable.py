"""Weights folders travel: a copied folder generates, a bundled one generates without its bases, and
folders or bases given as hub ids resolve through an (offline) Hugging Face cache."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from model.generate import main as generate
from model.weights_cli import main as weights_cli

from hubcache import add_to_cache


def _generate(weights: str, portrait: Path, speech: Path, out: Path) -> int:
    return generate(["--weights", weights, "--image", str(portrait), "--audio", str(speech), "--out", str(out),
                     "--steps", "1", "--guidance-scale", "1", "--set", "progress=false"])


def test_a_copied_weights_folder_generates(tiny_weights, portrait, short_speech, tmp_path):
    moved = tmp_path / "somewhere" / "else" / "weights"
    shutil.copytree(tiny_weights, moved)
    assert _generate(str(moved), portrait, short_speech, tmp_path / "out.mp4") == 0
    assert (tmp_path / "out.mp4").stat().st_size > 0


def test_a_bundled_weights_folder_generates_without_its_bases(tiny_base, portrait, short_speech, tmp_path, capsys):
    base, weights = tmp_path / "base", tmp_path / "weights"
    shutil.copytree(tiny_base, base)
    assert weights_cli(["init", "--base", str(base), "--preset", "tiny", "--to", str(weights)]) == 0
    assert weights_cli(["bundle", str(weights)]) == 0
    index = yaml.safe_load((weights / "weights.yaml").read_text())
    assert [index[k] for k in ("vae", "wav2vec2", "insightface")] == ["bases/vae", "bases/wav2vec2", "bases/insightface"]
    shutil.rmtree(base)  # the bases are gone, or the folder went to another machine
    moved = tmp_path / "elsewhere"
    shutil.move(weights, moved)
    assert weights_cli(["check", str(moved)]) == 0
    assert _generate(str(moved), portrait, short_speech, tmp_path / "out.mp4") == 0


def test_an_unbundled_copy_without_its_bases_is_named(tiny_base, tmp_path, capsys):
    base, weights = tmp_path / "base", tmp_path / "weights"
    shutil.copytree(tiny_base, base)
    assert weights_cli(["init", "--base", str(base), "--preset", "tiny", "--to", str(weights)]) == 0
    shutil.rmtree(base)
    assert weights_cli(["check", str(weights)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: config key 'WEIGHTS': in {weights / 'weights.yaml'}, config key 'vae': base model "
                          f"{base / 'vae'} not found") and "hallo-weights bundle" in err


@pytest.fixture
def offline_cache(tmp_path, monkeypatch) -> Path:
    from huggingface_hub import constants

    cache = tmp_path / "hf" / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_weights_and_bases_by_hub_id(tiny_base, tiny_weights, portrait, short_speech, offline_cache, tmp_path, capsys):
    add_to_cache(offline_cache, "stabilityai/sd-vae-ft-mse", tiny_base / "vae")
    add_to_cache(offline_cache, "facebook/wav2vec2-base-960h", tiny_base / "wav2vec2")
    add_to_cache(offline_cache, "someone/antelopev2", tiny_base / "insightface" / "models", "models")
    local = tmp_path / "weights"
    shutil.copytree(tiny_weights, local)
    index = yaml.safe_load((local / "weights.yaml").read_text())
    index.update(vae="stabilityai/sd-vae-ft-mse", wav2vec2="facebook/wav2vec2-base-960h", insightface="someone/antelopev2/models")
    (local / "weights.yaml").write_text(yaml.safe_dump(index))
    add_to_cache(offline_cache, "someone/hallo-tiny", local)
    assert _generate("someone/hallo-tiny", portrait, short_speech, tmp_path / "out.mp4") == 0
    assert _generate("someone/not-cached", portrait, short_speech, tmp_path / "out.mp4") == 2
    assert ("error: config key 'weights': someone/not-cached is neither a local folder nor a hub model in the Hugging "
            "Face cache") in capsys.readouterr().err


def test_a_weights_index_out_of_range_is_named(tiny_weights, tmp_path, capsys):
    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights, weights)
    index = yaml.safe_load((weights / "weights.yaml").read_text())
    (weights / "weights.yaml").write_text(yaml.safe_dump({**index, "clip_frames": 0}))
    assert weights_cli(["check", str(weights)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: config key 'WEIGHTS': in {weights / 'weights.yaml'}, "
                                               "config key 'clip_frames' must be >= 1, got 0")


def test_weights_made_from_a_base_named_by_hub_id_name_their_bases_by_hub_id(tiny_base, tiny_weights, portrait,
                                                                             short_speech, offline_cache, tmp_path):
    """What a training run from `model.pretrained_dir=owner/name` exports: no path of this machine's cache."""
    import dataclasses

    from model.pretrained import weights_index
    from model.presets import get_preset
    from model.weights import load_net, read_index, save_weights

    add_to_cache(offline_cache, "someone/tiny-base", tiny_base)
    index = dataclasses.replace(weights_index(get_preset("tiny"), "someone/tiny-base"), **{
        k: getattr(read_index(tiny_weights), k) for k in ("resolution", "clip_frames", "motion_frames")})
    save_weights(load_net(tiny_weights), tmp_path / "weights", index)
    recorded = yaml.safe_load((tmp_path / "weights" / "weights.yaml").read_text())
    assert [recorded[k] for k in ("vae", "wav2vec2", "insightface")] == [
        "someone/tiny-base/vae", "someone/tiny-base/wav2vec2", "someone/tiny-base/insightface/models"]
    assert _generate(str(tmp_path / "weights"), portrait, short_speech, tmp_path / "out.mp4") == 0


def test_bases_named_by_object_url_or_pinned_hub_revision_keep_the_name():
    from model.pretrained import base_refs

    assert base_refs("s3://bucket/pretrained/")["insightface"] == "s3://bucket/pretrained/insightface/models"
    assert base_refs("someone/base@v2")["vae"] == "someone/base/vae@v2"
