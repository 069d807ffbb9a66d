"""Weights folders that plain tools load: diffusers' DiffusionPipeline generates from one, the denoising UNet
refuses to load as a plain diffusers UNet, and folders go to and come back from the hub (a stand-in)."""
from __future__ import annotations

import shutil
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline, UNet2DConditionModel, UNet3DConditionModel

from foundation.media_io import read_video
from model.generate import main as generate
from model.weights import load_net, read_index
from model.weights_cli import main as weights_cli


def test_diffusion_pipeline_loads_a_weights_folder_and_generates_what_hallo_generate_does(
        tiny_weights, portrait, short_speech, tmp_path):
    folder = tmp_path / "export"
    shutil.copytree(tiny_weights, folder)  # the folder alone: model_index.json and pipeline.py are in it
    pipe = DiffusionPipeline.from_pretrained(str(folder), trust_remote_code=True)
    assert type(pipe).__name__ == "HalloForgePipeline" and pipe.weights_folder == folder.resolve()
    expected = load_net(folder).state_dict()
    assert all(torch.equal(v, pipe.denoising_unet.state_dict()[k[len("denoising_unet."):]])
               for k, v in expected.items() if k.startswith("denoising_unet."))
    video = pipe(image=portrait, audio=short_speech, out=tmp_path / "pipe.mp4", steps=1, guidance_scale=1, progress=False)
    assert generate(["--weights", str(folder), "--image", str(portrait), "--audio", str(short_speech),
                     "--out", str(tmp_path / "cli.mp4"), "--steps", "1", "--guidance-scale", "1", "--set", "progress=false"]) == 0
    fps = read_index(folder).fps
    frames, reference = read_video(video, fps), read_video(tmp_path / "cli.mp4", fps)
    assert len(frames) == 30 and np.array_equal(frames, reference)  # same seed, same weights: the same video


def test_the_denoising_unet_does_not_load_silently_as_a_plain_diffusers_unet(tiny_weights):
    for cls in (UNet2DConditionModel, UNet3DConditionModel):
        with pytest.raises(ValueError, match="hallo-forge's DenoisingUNet3D"):
            cls.from_pretrained(str(tiny_weights), subfolder="denoising_unet")


class FakeHub:
    """Model repositories as folders: what create_repo/upload_folder/snapshot_download do, without a network."""

    def __init__(self, root: Path) -> None:
        self.root, self.created = root, []

    def install(self, monkeypatch) -> None:
        hub = self
        monkeypatch.setattr(huggingface_hub.HfApi, "create_repo",
                            lambda api, repo_id, **kw: hub.created.append((repo_id, kw)) or f"https://hub.test/{repo_id}")
        monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder",
                            lambda api, folder_path, repo_id, **kw: shutil.copytree(folder_path, self.root / repo_id))
        monkeypatch.setattr(huggingface_hub, "snapshot_download", self.download)

    def download(self, repo_id: str, revision=None, local_dir=None, **kw) -> str:
        if not (self.root / repo_id).is_dir():
            raise huggingface_hub.errors.RepositoryNotFoundError(f"404 Client Error: {repo_id} not found")
        shutil.copytree(self.root / repo_id, local_dir, dirs_exist_ok=True)
        return str(local_dir)


def test_push_then_pull_gives_back_a_folder_that_loads(tiny_weights, tmp_path, monkeypatch, capsys):
    hub = FakeHub(tmp_path / "hub")
    hub.install(monkeypatch)
    folder = tmp_path / "weights"
    shutil.copytree(tiny_weights, folder)
    assert weights_cli(["push", str(folder), "me/hallo-tiny"]) == 2  # its bases are paths on this machine
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"run `hallo-weights bundle {folder}` first" in err[0] and not hub.created
    assert weights_cli(["bundle", str(folder)]) == 0
    assert weights_cli(["push", str(folder), "me/hallo-tiny", "--private"]) == 0
    assert hub.created == [("me/hallo-tiny", {"exist_ok": True, "private": True})]
    assert weights_cli(["pull", "me/hallo-tiny", "--to", str(tmp_path / "pulled")]) == 0
    shutil.rmtree(folder)  # what was pushed is gone: the pulled copy stands alone
    assert weights_cli(["check", str(tmp_path / "pulled")]) == 0
    pulled = load_net(tmp_path / "pulled").state_dict()
    original = load_net(tiny_weights).state_dict()
    assert pulled.keys() == original.keys() and all(torch.equal(pulled[k], original[k]) for k in original)
    assert weights_cli(["pull", "me/absent", "--to", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: could not pull me/absent: tried ") and "HF_ENDPOINT" in err[0]


def test_an_offline_pull_is_one_line_naming_the_settings_that_help(tmp_path, capsys):
    assert weights_cli(["pull", "someone/weights", "--to", str(tmp_path / "w")]) == 2  # HF_HUB_OFFLINE (conftest)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "HF_HUB_OFFLINE=1 is set" in err[0] and "HTTPS_PROXY" in err[0]
