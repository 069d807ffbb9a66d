"""Base folders (stand-ins in the real layout) and the weights folder built from them."""
from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel

from model.motion_checkpoint import read_checkpoint, to_animatediff_state_dict
from model.pretrained import base_paths, main
from model.weights import load_net, read_index, resolve


def test_standins_use_the_real_layout(tiny_base):
    paths = base_paths(tiny_base)
    assert (paths["unet"] / "config.json").is_file() and (paths["vae"] / "config.json").is_file()
    assert paths["motion"].is_file()
    assert {p.name for p in paths["wav2vec2"].glob("*.json")} >= {"config.json", "preprocessor_config.json"}
    assert len(list(paths["insightface"].glob("*.onnx"))) == 2


def test_init_copies_the_bases_into_the_model(tiny_base, tiny_weights):
    index = read_index(tiny_weights)
    assert (index.preset, index.resolution, index.clip_frames, index.motion_frames) == ("tiny", 64, 8, 2)
    assert resolve(tiny_weights, index.vae, "vae") == base_paths(tiny_base)["vae"].resolve()
    net = load_net(tiny_weights)
    unet = UNet2DConditionModel.from_pretrained(base_paths(tiny_base)["unet"]).state_dict()
    spatial = net.denoising_unet.spatial.state_dict()
    assert spatial.keys() == unet.keys() and all(torch.equal(spatial[k], unet[k]) for k in unet)
    # the ReferenceNet holds the same UNet without its output head
    reference = net.reference_unet.state_dict()
    head = {k for k in unet if k.startswith(("conv_norm_out.", "conv_out."))}
    assert len(head) == 4 and reference.keys() == unet.keys() - head
    assert all(torch.equal(reference[k], unet[k]) for k in reference)
    ckpt = read_checkpoint(base_paths(tiny_base)["motion"])
    exported = to_animatediff_state_dict(net.denoising_unet.motion_modules)
    assert exported.keys() == ckpt.keys() and all(torch.equal(exported[k], ckpt[k]) for k in ckpt)


def test_cli_requires_a_destination():
    with pytest.raises(SystemExit):
        main(["fetch"])
