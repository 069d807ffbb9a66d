"""Base folders (stand-ins in the real layout) and the weights folder built from them."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
from diffusers import UNet2DConditionModel

from model.motion_checkpoint import read_checkpoint, to_animatediff_state_dict
from model.pretrained import base_paths
from model.weights_cli import main
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


def test_weights_name_the_vocal_separator_the_behaviour_needs(tiny_base, tiny_weights, tmp_path) -> None:
    import shutil

    import yaml

    from foundation.config import ConfigError
    from model.weights import INDEX_FILE, check_weights_folder

    index = read_index(tiny_weights)
    assert index.behaviour.separate_vocals
    assert resolve(tiny_weights, index.vocal_separator, "vocal_separator") == base_paths(tiny_base)["vocal_separator"].resolve()
    # without the separator's folder: refused while the behaviour separates, fine once it does not
    copy = tmp_path / "weights"
    shutil.copytree(tiny_weights, copy)
    entries = yaml.safe_load((copy / INDEX_FILE).read_text())
    entries["vocal_separator"] = ""
    (copy / INDEX_FILE).write_text(yaml.safe_dump(entries))
    with pytest.raises(ConfigError, match="vocal_separator"):
        check_weights_folder(str(copy), "weights")
    entries["behaviour"]["separate_vocals"] = False
    (copy / INDEX_FILE).write_text(yaml.safe_dump(entries))
    assert check_weights_folder(str(copy), "weights") == copy.resolve()


def test_separator_fetch_installs_a_loadable_set_or_fails_in_one_line(tiny_base, tmp_path, monkeypatch, capsys) -> None:
    """Hub offline: the UVR addresses (here a local server holding the stand-in's files) are used; the set is
    installed only once its hash is in the model data."""
    import functools
    import http.server
    import threading

    from huggingface_hub import constants

    from model import separator_weights

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    served = base_paths(tiny_base)["vocal_separator"]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        monkeypatch.setattr(separator_weights, "UVR_URLS", {name: f"{url}/{name}" for name in separator_weights.UVR_URLS})
        separator_weights.fetch_separator(tmp_path / "uvr")
        assert sorted(p.name for p in (tmp_path / "uvr").iterdir()) == sorted(p.name for p in served.iterdir())
        monkeypatch.setattr(separator_weights, "UVR_URLS", {name: f"{url}/no/{name}" for name in separator_weights.UVR_URLS})
        with pytest.raises(RuntimeError, match="could not fetch the vocal separator"):
            separator_weights.fetch_separator(tmp_path / "elsewhere")
        assert not list((tmp_path / "elsewhere").glob("*.onnx"))
    finally:
        server.shutdown()


@pytest.mark.parametrize("network", ["offline", "closed port"])
def test_fetch_without_the_hub_lists_what_it_fetches_then_fails_in_one_line(network, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and "proxy" not in k.lower()}
    if network == "offline":
        env["HF_HUB_OFFLINE"] = "1"
    else:
        with socket.socket() as sock:  # bound, then closed: nothing listens there
            sock.bind(("127.0.0.1", 0))
            env["HF_ENDPOINT"] = f"http://127.0.0.1:{sock.getsockname()[1]}"
    env["HF_HOME"] = str(tmp_path / "hf")  # an empty cache
    result = subprocess.run([sys.executable, "-m", "model.weights_cli", "fetch", "--to", str(tmp_path / "base")],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5 unet/" in result.stderr and "3.4 GB" in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == result.stderr.strip().splitlines()[-1]
    assert errors[0].startswith("error: could not fetch unet (stable-diffusion-v1-5/stable-diffusion-v1-5 unet/)")
    assert all(hint in errors[0] for hint in ("HF_ENDPOINT=https://hf-mirror.com", "HTTPS_PROXY", "rerun to resume"))
    assert ("HF_HUB_OFFLINE=1 is set" in errors[0]) == (network == "offline")
    assert network == "offline" or env["HF_ENDPOINT"] in errors[0]
