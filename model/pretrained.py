"""Pretrained bases: fetch the real ones, write tiny stand-ins, and build a Hallo model from either.

Base folder layout (the same for real weights and stand-ins, so one loading path serves both):

    BASE/unet/                           SD-1.5 UNet (stable-diffusion-v1-5, unet/ only)
    BASE/vae/                            stabilityai/sd-vae-ft-mse
    BASE/motion_module/mm_sd_v15_v2.ckpt guoyww/animatediff (AnimateDiff v2 motion modules)
    BASE/wav2vec2/                       facebook/wav2vec2-base-960h (English; the audio encoder by default)
    BASE/audio_encoders/NAME/            other audio encoders, with `fetch --also NAME` (AUDIO_ENCODERS):
                                         chinese-wav2vec2-base (TencentGameMate, Mandarin), ...
    BASE/whisper/                        openai/whisper-base, with `fetch --also whisper`: curation's spoken-language
                                         identification (curation/language.py)
    BASE/insightface/models/             antelopev2 detector (scrfd_10g_bnkps) + recogniser (glintr100)
    BASE/syncnet/syncnet_v2.model        SyncNet (syncnet_python's weights; LatentSync's HF repo auxiliary/)
    BASE/hallo/net.pth                   fudan-generative-ai/hallo: Hallo's released weights
    BASE/uvr/Kim_Vocal_2.onnx            MDX-Net vocal separator + audio-separator's model data (foundation.vocals;
                                         Hallo's HF repo audio_separator/, else UVR's model repository)

    hallo-weights fetch --to BASE [--also chinese-wav2vec2-base --also whisper]
                                                        (needs internet and the Hugging Face hub)
    python -m examples.standins --to BASE               (stand-ins in the same layout, offline; an example's,
                                                         not the library's: `tiny` here names it and exits 2)
    hallo-weights init --base BASE --preset sd15 --to WEIGHTS
        -> a generation/training-ready weights folder (model.weights): SD-1.5 in the ReferenceNet and
           the denoising UNet, AnimateDiff in the motion modules, the rest freshly initialised.
    hallo-weights hallo --base BASE [--net BASE/hallo/net.pth] --to WEIGHTS
        -> Hallo's released weights as a weights folder that computes what Hallo computes
           (model/hallo_checkpoint.py; behaviours: model/weights_behaviour.py HALLO). Exit status 2 on a
           file that is not a Hallo net.pth fitting the base's UNet, with one line naming the key.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from foundation import hub
from foundation.audio_encoder import Record, encoder_record
from foundation.audio_features import encoder_config
from foundation.config import ConfigError
from foundation.storage import is_url
from foundation.syncnet import weights_in
from model.weights_behaviour import HALLO, ModelBehaviour
from model.hallo_checkpoint import HalloCheckpointError, hallo_preset, map_hallo_state_dict, read_hallo_net
from model.motion_checkpoint import load_motion_checkpoint
from model.net import COMPONENTS, HalloModules, build_hallo_modules
from model.presets import Preset, with_base_configs
from model.separator_weights import fetch_separator
from model.syncnet_weights import fetch_syncnet
from model.unet3d import unet_config_dict
from model.weights import WeightsIndex, save_weights

log = logging.getLogger(__name__)

SD15_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"
VAE_REPO = "stabilityai/sd-vae-ft-mse"
MOTION_REPO, MOTION_FILE = "guoyww/animatediff", "mm_sd_v15_v2.ckpt"
WAV2VEC2_REPO = "facebook/wav2vec2-base-960h"
HALLO_REPO, HALLO_FILE = "fudan-generative-ai/hallo", "hallo/net.pth"
# Audio encoders `fetch --also NAME` puts into BASE/audio_encoders/NAME (all 12 layers x 768, like wav2vec2-base-960h,
# so Hallo's weights fine-tune on their features unchanged)
AUDIO_ENCODERS = {"wav2vec2-base-960h": WAV2VEC2_REPO, "chinese-wav2vec2-base": "TencentGameMate/chinese-wav2vec2-base"}
WHISPER_REPO = "openai/whisper-base"  # multilingual; only its language detection is used
WHISPER_FILES = ("config.json", "generation_config.json", "preprocessor_config.json")
INSIGHTFACE_PACK = "antelopev2"
INSIGHTFACE_FILES = ("scrfd_10g_bnkps.onnx", "glintr100.onnx")  # detection + recognition only


def base_paths(base: Path) -> dict[str, Path]:
    return {
        "unet": base / "unet",
        "vae": base / "vae",
        "motion": base / "motion_module" / MOTION_FILE,
        "wav2vec2": base / "wav2vec2",
        "insightface": base / "insightface" / "models",
        "syncnet": weights_in(base),
        "hallo": base / HALLO_FILE,
        "vocal_separator": base / "uvr",
    }


def audio_encoder_dir(base: Path, name: str) -> Path:
    """Where `fetch --also NAME` puts a known audio encoder (wav2vec2-base-960h: BASE/wav2vec2)."""
    return base / "wav2vec2" if name == "wav2vec2-base-960h" else base / "audio_encoders" / name


# What `fetch` downloads: base_paths key -> (where from, approximate size from the publishers' file lists;
# never re-measured here).
FETCHED = {
    "unet": (f"{SD15_REPO} unet/", "3.4 GB"),
    "vae": (VAE_REPO, "0.3 GB"),
    "motion": (f"{MOTION_REPO} {MOTION_FILE}", "1.8 GB"),
    "wav2vec2": (WAV2VEC2_REPO, "0.4 GB"),
    "hallo": (f"{HALLO_REPO} {HALLO_FILE}", "5 GB"),
    "insightface": (f"insightface's {INSIGHTFACE_PACK} pack (GitHub releases)", "0.35 GB"),
    "syncnet": ("ByteDance/LatentSync auxiliary/, else the syncnet_python address", "0.05 GB"),
    "vocal_separator": ("Hallo's audio_separator/ (Kim_Vocal_2.onnx), else UVR's model repository", "0.07 GB"),
}
# `fetch --also NAME`: the other audio encoders (BASE/audio_encoders/NAME) and Whisper (BASE/whisper)
OPTIONAL = {**{name: (repo, "0.4 GB") for name, repo in AUDIO_ENCODERS.items() if name != "wav2vec2-base-960h"},
            "whisper": (WHISPER_REPO, "0.3 GB")}


class FetchError(RuntimeError):
    """A download that did not arrive; the message is one line naming it and the settings that help."""


def fetch_failure(name: str, err: BaseException) -> FetchError:
    source = {**FETCHED, **OPTIONAL}[name][0]
    return FetchError(f"could not fetch {name} ({source}): {hub.network_help(err)}; rerun to resume "
                      "(finished parts are kept)")


def _fetch_paths(to: Path, also: tuple[str, ...]) -> dict[str, Path]:
    paths = {name: path for name, path in base_paths(to).items() if name in FETCHED}
    for name in also:
        paths[name] = to / "whisper" if name == "whisper" else audio_encoder_dir(to, name)
    return paths


def fetch(to: Path, also: tuple[str, ...] = ()) -> None:
    """Download every base into `to`, and the OPTIONAL parts named in `also` (skips parts that are already
    there); FetchError when one does not arrive."""
    unknown = sorted(set(also) - set(OPTIONAL))
    if unknown:
        raise FetchError(f"fetch --also knows {', '.join(OPTIONAL)}, not {', '.join(unknown)}")
    paths = _fetch_paths(to, also)
    listed = {**FETCHED, **{name: OPTIONAL[name] for name in also}}
    missing = [name for name in listed if not paths[name].exists()]
    log.info("fetching into %s (approximate sizes; parts already there are skipped):\n%s", to, "\n".join(
        f"  {name:<22} {size:>7}  {source}{'' if name in missing else '  (already there)'}"
        for name, (source, size) in listed.items()))
    for name in missing:
        log.info("fetching %s: %s (~%s)", name, *listed[name])
        try:
            _fetch_one(name, to, paths)
        except Exception as err:  # noqa: BLE001 - offline, blocked, rate-limited, gated: all "did not arrive"
            raise fetch_failure(name, err) from err
    log.info("bases ready in %s", to)


def _fetch_transformers(repo: str, names: tuple[str, ...], folder: Path) -> None:
    """A transformers model's config files and its weights (safetensors, else the .bin file)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    for name in names:
        hf_hub_download(repo, name, local_dir=folder)
    try:
        hf_hub_download(repo, "model.safetensors", local_dir=folder)
    except EntryNotFoundError:
        hf_hub_download(repo, "pytorch_model.bin", local_dir=folder)


def _fetch_one(name: str, to: Path, paths: dict[str, Path]) -> None:
    from huggingface_hub import hf_hub_download, snapshot_download

    with tempfile.TemporaryDirectory() as tmp:
        if name == "unet":
            snapshot_download(SD15_REPO, allow_patterns=["unet/config.json", "unet/diffusion_pytorch_model.safetensors"],
                              local_dir=tmp)
            shutil.move(str(Path(tmp) / "unet"), paths["unet"])
        elif name == "vae":
            snapshot_download(VAE_REPO, allow_patterns=["config.json", "diffusion_pytorch_model.safetensors"],
                              local_dir=paths["vae"])
        elif name == "motion":
            hf_hub_download(MOTION_REPO, MOTION_FILE, local_dir=paths["motion"].parent)
        elif name == "wav2vec2" or name in AUDIO_ENCODERS:
            _fetch_transformers(AUDIO_ENCODERS.get(name, WAV2VEC2_REPO), ("config.json", "preprocessor_config.json"),
                                paths[name])
        elif name == "whisper":
            _fetch_transformers(WHISPER_REPO, WHISPER_FILES, paths[name])
        elif name == "hallo":
            hf_hub_download(HALLO_REPO, HALLO_FILE, local_dir=to)  # lands at to/hallo/net.pth
        elif name == "insightface":
            from insightface.utils.storage import download

            pack = Path(download("models", INSIGHTFACE_PACK, root=tmp))
            paths["insightface"].mkdir(parents=True)
            for file in INSIGHTFACE_FILES:
                shutil.move(str(next(pack.rglob(file))), paths["insightface"] / file)
        elif name == "vocal_separator":
            fetch_separator(paths["vocal_separator"])
        else:
            fetch_syncnet(paths["syncnet"])


def init_from_base(base: Path, preset: Preset, audio_encoder: Path | None = None) -> tuple[HalloModules, Preset]:
    """Hallo modules initialised from the bases: SD UNet into both UNets, AnimateDiff motion modules.

    Shapes of the UNet and of the audio features come from the base weights' own configs (the audio encoder's:
    `audio_encoder`, default BASE/wav2vec2).
    """
    paths = base_paths(base)
    unet = UNet2DConditionModel.from_pretrained(str(paths["unet"]))
    preset = with_base_configs(preset, unet_config_dict(unet), encoder_config(audio_encoder or paths["wav2vec2"]))
    modules = build_hallo_modules(preset, unet)
    report = load_motion_checkpoint(modules.denoising_unet.motion_modules, paths["motion"])
    log.info("motion module: %s", report.summary())
    return modules, preset


def base_refs(base: str | Path) -> dict[str, str]:
    """`base_paths` of a base named by a local folder, an object URL or a hub id, named the same way: what a
    weights.yaml records, so that the folder finds its bases wherever the base can be reached."""
    text = str(base)
    parts = {name: path.as_posix() for name, path in base_paths(Path("")).items()}
    if is_url(text):
        return {name: f"{text.rstrip('/')}/{part}" for name, part in parts.items()}
    if not Path(text).exists() and hub.is_hub_id(text):
        match = hub.HUB_ID.match(text)
        revision = f"@{match['revision']}" if match["revision"] else ""
        return {name: f"{match['repo']}{match['sub']}/{part}{revision}" for name, part in parts.items()}
    return {name: str(path) for name, path in base_paths(Path(text)).items()}


def base_encoder_record(ref: str) -> Record:
    """The record of the base's wav2vec2; {} (not recorded, with a warning) when its weights are not here (a
    conversion needs only its config)."""
    try:
        return encoder_record(hub.resolve(ref, "wav2vec2"), ref)
    except (ConfigError, FileNotFoundError) as err:
        log.warning("weights.yaml records no audio encoder (generation cannot check it): %s", err)
        return {}


def weights_index(preset: Preset, base: str | Path, behaviour: ModelBehaviour | None = None,
                  audio_encoder: tuple[str, Record] | None = None) -> WeightsIndex:
    """The index of a weights folder made from `base` (a local folder, object URL or hub id) at the preset's
    generation sizes, recording `audio_encoder` (its name and record) or, without it, the base's wav2vec2."""
    refs = base_refs(base)
    if audio_encoder is None:
        audio_encoder = refs["wav2vec2"], base_encoder_record(refs["wav2vec2"])
    return WeightsIndex(
        preset=preset.name,
        resolution=preset.resolution,
        clip_frames=preset.infer_frames,
        motion_frames=preset.infer_motion_frames,
        vae=refs["vae"],
        wav2vec2=audio_encoder[0],
        audio_encoder=audio_encoder[1],
        insightface=refs["insightface"],
        vocal_separator=refs["vocal_separator"],
        behaviour=behaviour if behaviour is not None else ModelBehaviour(),
    )


def named_encoder(audio_encoder: Path | None) -> tuple[str, Record] | None:
    """(name, record) of an `--audio-encoder` folder for weights_index; None: the base's wav2vec2."""
    return (str(audio_encoder.resolve()), encoder_record(audio_encoder)) if audio_encoder else None


def init_weights(base: Path, preset: Preset, to: Path, audio_encoder: Path | None = None) -> WeightsIndex:
    modules, preset = init_from_base(base, preset, audio_encoder)
    index = weights_index(preset, base, audio_encoder=named_encoder(audio_encoder))
    save_weights(modules, to, index)
    return index


def base_configs(base: Path, audio_encoder: Path | None = None) -> tuple[dict, dict]:
    """The SD UNet's constructor arguments and the audio encoder's config (default: the base's wav2vec2), configs only."""
    paths = base_paths(base)
    try:
        with torch.device("meta"):
            unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(paths["unet"])))
        wav2vec2 = encoder_config(audio_encoder or paths["wav2vec2"])
    except (OSError, ValueError) as err:
        raise HalloCheckpointError(f"base folder {base}: {str(err).strip().splitlines()[0]}") from None
    return unet_config_dict(unet), wav2vec2


def load_hallo_modules(modules: HalloModules, state: dict[str, torch.Tensor]) -> None:
    """Put net.pth's tensors into `modules` (built at the matching sizes, on any device, meta too)."""
    target = {f"{name}.{k}": v for name in COMPONENTS for k, v in getattr(modules, name).state_dict().items()}
    mapped = map_hallo_state_dict(state, target)
    for name in COMPONENTS:
        prefix = name + "."
        module = getattr(modules, name)
        module.load_state_dict({k[len(prefix):]: v for k, v in mapped.items() if k.startswith(prefix)}, assign=True)
        unfilled = [k for k, v in [*module.named_parameters(), *module.named_buffers()] if v.is_meta]
        if unfilled:
            raise HalloCheckpointError(f"the model's '{name}.{unfilled[0]}' has no tensor in net.pth")


def hallo_modules(state: dict[str, torch.Tensor], base: Path, preset: Preset,
                  audio_encoder: Path | None = None) -> tuple[HalloModules, Preset]:
    """Modules sized after the base's UNet config and net.pth itself, holding net.pth's weights."""
    unet, wav2vec2 = base_configs(base, audio_encoder)
    preset = hallo_preset(state, preset, unet, wav2vec2)
    with torch.device("meta"):  # no memory until net.pth's tensors are assigned
        modules = build_hallo_modules(preset)
    load_hallo_modules(modules, state)
    return modules, preset


def convert_hallo(base: Path, net: Path, preset: Preset, to: Path, audio_encoder: Path | None = None) -> WeightsIndex:
    """Hallo's net.pth -> a weights folder recording Hallo's behaviours; written whole or not at all. With
    `audio_encoder` (of Hallo's 12 x 768 shape), the folder records that encoder: a start for fine-tuning on its
    features (Hallo was trained on wav2vec2-base-960h's)."""
    if to.exists() and any(to.iterdir()):
        raise HalloCheckpointError(f"{to} exists and is not empty: choose a new folder")
    modules, preset = hallo_modules(read_hallo_net(net), base, preset, audio_encoder)
    index = weights_index(preset, base, dataclasses.replace(HALLO), named_encoder(audio_encoder))
    tmp = to.with_name(f".{to.name}.converting")
    shutil.rmtree(tmp, ignore_errors=True)
    save_weights(modules, tmp, index)
    if to.exists():
        to.rmdir()
    os.replace(tmp, to)
    log.info("converted %s (%d tensors) into %s", net, sum(len(getattr(modules, n).state_dict()) for n in COMPONENTS), to)
    return index


if __name__ == "__main__":  # the command is model/weights_cli.py, on top: the library does not import it
    print(f"error: `python -m model.pretrained` moved: use `hallo-weights {' '.join(sys.argv[1:])}` "
          "(`python -m model.weights_cli` in a clone; docs/install.md)", file=sys.stderr)
    sys.exit(2)
