"""Pretrained bases: fetch the real ones, write tiny stand-ins, and build a Hallo model from either.

Base folder layout (the same for real weights and stand-ins, so one loading path serves both):

    BASE/unet/                           SD-1.5 UNet (stable-diffusion-v1-5, unet/ only)
    BASE/vae/                            stabilityai/sd-vae-ft-mse
    BASE/motion_module/mm_sd_v15_v2.ckpt guoyww/animatediff (AnimateDiff v2 motion modules)
    BASE/wav2vec2/                       facebook/wav2vec2-base-960h
    BASE/insightface/models/             antelopev2 detector (scrfd_10g_bnkps) + recogniser (glintr100)

    python -m model.pretrained fetch --to BASE          (needs internet and the Hugging Face hub)
    python -m model.pretrained tiny --to BASE           (stand-ins, tiny preset by default, offline: random,
                                                         except the tiny VAE, trained on the bundled media)
    python -m model.pretrained init --base BASE --preset sd15 --to WEIGHTS
        -> a generation/training-ready weights folder (model.weights): SD-1.5 in the ReferenceNet and
           the denoising UNet, AnimateDiff in the motion modules, the rest freshly initialised.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from diffusers import UNet2DConditionModel
from transformers import Wav2Vec2Config

from model.motion_checkpoint import load_motion_checkpoint
from model.net import HalloModules, build_hallo_modules
from model.presets import PRESETS, Preset, get_preset, with_base_configs
from model.unet3d import unet_config_dict
from model.weights import WeightsIndex, save_weights

log = logging.getLogger(__name__)

SD15_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"
VAE_REPO = "stabilityai/sd-vae-ft-mse"
MOTION_REPO, MOTION_FILE = "guoyww/animatediff", "mm_sd_v15_v2.ckpt"
WAV2VEC2_REPO = "facebook/wav2vec2-base-960h"
INSIGHTFACE_PACK = "antelopev2"
INSIGHTFACE_FILES = ("scrfd_10g_bnkps.onnx", "glintr100.onnx")  # detection + recognition only


def base_paths(base: Path) -> dict[str, Path]:
    return {
        "unet": base / "unet",
        "vae": base / "vae",
        "motion": base / "motion_module" / MOTION_FILE,
        "wav2vec2": base / "wav2vec2",
        "insightface": base / "insightface" / "models",
    }


def fetch(to: Path) -> None:
    """Download every base into `to` (skips parts that are already there)."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError

    paths = base_paths(to)
    with tempfile.TemporaryDirectory() as tmp:
        if not paths["unet"].is_dir():
            snapshot_download(SD15_REPO, allow_patterns=["unet/config.json", "unet/diffusion_pytorch_model.safetensors"],
                              local_dir=tmp)
            shutil.move(str(Path(tmp) / "unet"), paths["unet"])
        if not paths["vae"].is_dir():
            snapshot_download(VAE_REPO, allow_patterns=["config.json", "diffusion_pytorch_model.safetensors"],
                              local_dir=paths["vae"])
        if not paths["motion"].is_file():
            hf_hub_download(MOTION_REPO, MOTION_FILE, local_dir=paths["motion"].parent)
        if not paths["wav2vec2"].is_dir():
            for name in ("config.json", "preprocessor_config.json"):
                hf_hub_download(WAV2VEC2_REPO, name, local_dir=paths["wav2vec2"])
            try:
                hf_hub_download(WAV2VEC2_REPO, "model.safetensors", local_dir=paths["wav2vec2"])
            except EntryNotFoundError:
                hf_hub_download(WAV2VEC2_REPO, "pytorch_model.bin", local_dir=paths["wav2vec2"])
        if not paths["insightface"].is_dir():
            from insightface.utils.storage import download

            pack = Path(download("models", INSIGHTFACE_PACK, root=tmp))
            paths["insightface"].mkdir(parents=True)
            for name in INSIGHTFACE_FILES:
                shutil.move(str(next(pack.rglob(name))), paths["insightface"] / name)
    log.info("bases ready in %s", to)


def init_from_base(base: Path, preset: Preset) -> tuple[HalloModules, Preset]:
    """Hallo modules initialised from the bases: SD UNet into both UNets, AnimateDiff motion modules.

    Shapes of the UNet and of the audio features come from the base weights' own configs.
    """
    paths = base_paths(base)
    unet = UNet2DConditionModel.from_pretrained(str(paths["unet"]))
    wav2vec2 = Wav2Vec2Config.from_pretrained(str(paths["wav2vec2"])).to_dict()
    preset = with_base_configs(preset, unet_config_dict(unet), wav2vec2)
    modules = build_hallo_modules(preset, reference_unet=unet)
    report = load_motion_checkpoint(modules.denoising_unet.motion_modules, paths["motion"])
    log.info("motion module: %s", report.summary())
    return modules, preset


def init_weights(base: Path, preset: Preset, to: Path) -> WeightsIndex:
    modules, preset = init_from_base(base, preset)
    paths = base_paths(base)
    index = WeightsIndex(
        preset=preset.name,
        resolution=preset.resolution,
        clip_frames=preset.infer_frames,
        motion_frames=preset.infer_motion_frames,
        vae=str(paths["vae"]),
        wav2vec2=str(paths["wav2vec2"]),
        insightface=str(paths["insightface"]),
    )
    save_weights(modules, to, index)
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Pretrained bases for the Hallo model (see module docstring).")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="download the real bases (needs internet)").add_argument("--to", type=Path, required=True)
    tiny = sub.add_parser("tiny", help="write stand-ins in the same layout (offline; random but for the tiny VAE)")
    tiny.add_argument("--to", type=Path, required=True)
    tiny.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="sizes (sd15: full-size random weights)")
    init = sub.add_parser("init", help="build a weights folder for generation/training from a base folder")
    init.add_argument("--base", type=Path, required=True)
    init.add_argument("--preset", choices=sorted(PRESETS), default="sd15")
    init.add_argument("--to", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "fetch":
        fetch(args.to)
    elif args.command == "tiny":
        from model.standins import write_standins  # torch.onnx export machinery, only here

        write_standins(get_preset(args.preset), args.to)
    else:
        init_weights(args.base, get_preset(args.preset), args.to)
    print(f"wrote {args.to}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
