"""Model folders given as hub ids resolve through an (offline) Hugging Face cache; local paths win."""
from __future__ import annotations

from pathlib import Path

import pytest

from foundation import hub
from foundation.config import ConfigError

from hubcache import add_to_cache


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch) -> Path:
    from huggingface_hub import constants

    cache = tmp_path / "hf" / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_hub_ids_resolve_through_the_cache(tiny_pretrained: Path, offline_cache: Path) -> None:
    snapshot = add_to_cache(offline_cache, "facebook/wav2vec2-base-960h", tiny_pretrained / "wav2vec2")
    assert hub.model_folder("facebook/wav2vec2-base-960h", "k", hub.TRANSFORMERS) == snapshot
    unet = add_to_cache(offline_cache, "org/sd", tiny_pretrained / "unet", "unet")
    assert hub.model_folder("org/sd/unet", "k", hub.DIFFUSERS) == unet
    assert hub.model_folder("org/sd/unet@main", "k", hub.DIFFUSERS) == unet


def test_missing_models_name_the_key(tiny_pretrained: Path, offline_cache: Path, tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(ConfigError, match=r"config key 'annotations.wav2vec2_dir': nobody/nothing is neither a local "
                                          r"folder nor a hub model in the Hugging Face cache .*HF_HUB_OFFLINE is set"):
        hub.model_folder("nobody/nothing", "annotations.wav2vec2_dir", hub.TRANSFORMERS)
    with pytest.raises(ConfigError, match="'k': /no/such/folder does not exist"):
        hub.model_folder("/no/such/folder", "k", hub.TRANSFORMERS)
    with pytest.raises(ConfigError, match="is incomplete: no diffusion_pytorch_model"):
        hub.model_folder(str(tiny_pretrained / "wav2vec2"), "k", hub.DIFFUSERS)
    add_to_cache(offline_cache, "facebook/wav2vec2-base-960h", tiny_pretrained / "wav2vec2")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "facebook" / "wav2vec2-base-960h").mkdir(parents=True)  # a local folder of that name wins
    with pytest.raises(ConfigError, match=f"{tmp_path}/facebook/wav2vec2-base-960h is incomplete"):
        hub.model_folder("facebook/wav2vec2-base-960h", "k", hub.TRANSFORMERS)
