"""A generation-ready weights folder: the five trained modules plus an index of the frozen bases.

    WEIGHTS/
      weights.yaml        WeightsIndex: sizes and where the VAE, wav2vec2, insightface and vocal separator
                          models are
      reference_unet/     diffusers save_pretrained of each trainable module
      denoising_unet/
      face_locator/
      image_proj/
      audio_proj/
      model_index.json    the same folder as a diffusers pipeline (model/diffusers_files.py), with
      pipeline.py         the file that names its class: DiffusionPipeline.from_pretrained(WEIGHTS, trust_remote_code=True)

`hallo-weights init` writes one from pretrained bases; training exports into the same
layout with `save_weights`. A base entry in weights.yaml is an absolute path (what `save_weights`
writes for a local base outside the folder, so the folder works wherever it is copied on machines
that see the bases at the same path), an object URL (`s3://bucket/pretrained/vae`, mirrored into
the local cache) or a hub id resolved through the Hugging Face cache (`stabilityai/sd-vae-ft-mse`),
both recorded as the base was named, or a path relative to the folder (what it writes for a base
inside it). `hallo-weights bundle WEIGHTS` copies the bases into WEIGHTS/bases/ and points
the entries there, which makes the folder self-contained: it generates on any machine.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from diffusers import AutoencoderKL

from foundation import hub
from foundation.audio_features import WAV2VEC2_FILES
from foundation.config import ConfigError, load_config, opt, section
from foundation.storage import is_url
from foundation.vocals import MODEL_DATA_FILES, MODEL_FILE
from model.weights_behaviour import ModelBehaviour
from model.diffusers_files import write_pipeline_files
from model.net import COMPONENT_CLASSES, COMPONENTS, HalloModules, HalloNet

log = logging.getLogger(__name__)

INDEX_FILE = "weights.yaml"
BASES = ("vae", "wav2vec2", "insightface", "vocal_separator")
BASE_NEEDS: dict[str, hub.Needs] = {"vae": hub.DIFFUSERS, "wav2vec2": WAV2VEC2_FILES, "insightface": hub.ONNX,
                                    "vocal_separator": tuple((name,) for name in (MODEL_FILE, *MODEL_DATA_FILES))}
BUNDLE_DIR = "bases"


@dataclass
class WeightsIndex:
    preset: str = opt("sd15", "model preset the modules were built with (informational)")
    resolution: int = opt(512, "square pixel resolution the model generates", low=8)
    clip_frames: int = opt(16, "frames generated per clip", low=1)
    motion_frames: int = opt(2, "previous frames carried into the next clip", low=0)
    fps: int = opt(25, "video frame rate (the audio features are aligned to it)", low=1)
    vae: str = opt("", "AutoencoderKL folder (sd-vae-ft-mse): absolute path, hub id, or relative to this folder")
    wav2vec2: str = opt("", "audio encoder folder (wav2vec2 family: model + feature extractor): absolute path, hub id, or "
                            "relative to this folder")
    audio_encoder: dict[str, Any] = opt({}, "record of the audio encoder the modules were built for "
                                            "(foundation/audio_encoder.py: name, revision, sha256, layers, width); "
                                            "generation refuses another encoder unless allow_other_audio_encoder; "
                                            "{} = not recorded (older folders)")
    insightface: str = opt("", "folder with the face detector and ArcFace .onnx files: absolute path, hub id, or "
                               "relative to this folder")
    vocal_separator: str = opt("", "folder with Kim_Vocal_2.onnx and audio-separator's model data (BASE/uvr), read when "
                                   "behaviour.separate_vocals: absolute path, hub id, or relative to this folder")
    behaviour: ModelBehaviour = section(ModelBehaviour, "how these weights compute (model/weights_behaviour.py)")

    def validate(self) -> None:
        if self.resolution % 8 or self.resolution <= 0:
            raise ConfigError("config key 'resolution' must be a positive multiple of 8")
        if self.clip_frames <= 0 or self.motion_frames < 0:
            raise ConfigError("config keys 'clip_frames' > 0 and 'motion_frames' >= 0 required")


def read_index(folder: str | Path) -> WeightsIndex:
    path = Path(folder) / INDEX_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a weights folder (see `hallo-weights init`)")
    return load_config(WeightsIndex, path)


def resolve(folder: str | Path, entry: str, key: str) -> Path:
    """A base entry of the index (config key `key`) as a local folder: relative to the weights folder,
    absolute, an object URL (its local mirror) or a hub id."""
    if not entry:
        raise ConfigError(f"config key '{key}' is empty")
    if is_url(entry):
        return hub.resolve(entry, key)
    local = Path(folder) / entry  # an absolute entry stays itself
    if local.exists():
        return local.resolve()
    if Path(entry).is_absolute() or not hub.is_hub_id(entry):
        raise ConfigError(f"config key '{key}': base model {entry} not found (a weights folder copied to another "
                          "machine needs its bases there: run `hallo-weights bundle WEIGHTS` where they are, "
                          "or edit the entry to a local path or hub id)")
    return hub.resolve(entry, key)


def needed_bases(index: WeightsIndex) -> list[str]:
    """The bases generation with these weights reads (the separator only when the behaviour separates)."""
    return [name for name in BASES if name != "vocal_separator" or index.behaviour.separate_vocals]


def check_weights_folder(ref: str, key: str, bases: bool = True) -> Path:
    """The weights folder `ref` (local or hub id) resolved, after checking its index, its five modules and,
    with `bases`, the base models it names; ConfigError naming `key` (or the index's key) otherwise."""
    folder = hub.model_folder(ref, key, ((INDEX_FILE,),))
    try:
        index = read_index(folder)
    except ConfigError as err:
        raise ConfigError(f"config key '{key}': in {folder / INDEX_FILE}, {err}") from err
    for name in COMPONENTS:
        hub.model_folder(str(folder / name), key, hub.DIFFUSERS)
    for name in needed_bases(index) if bases else ():
        try:
            hub.model_folder(str(resolve(folder, getattr(index, name), name)), name, BASE_NEEDS[name])
        except ConfigError as err:
            raise ConfigError(f"config key '{key}': in {folder / INDEX_FILE}, {err}") from err
    return folder


def _entry(value: str, folder: Path) -> str:
    """How save_weights records a base: relative inside the folder, else absolute; an object URL or a hub id
    as it is."""
    path = Path(value)
    if not value or is_url(value) or (not path.exists() and hub.is_hub_id(value)):
        return value
    path = path.resolve()
    return os.path.relpath(path, folder.resolve()) if path.is_relative_to(folder.resolve()) else str(path)


def save_weights(modules: HalloModules | HalloNet, folder: str | Path, index: WeightsIndex) -> None:
    """Write the five modules and the index (bases as `_entry` records them, see the module docstring)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    parts = modules.parts() if isinstance(modules, HalloNet) else modules
    for name in COMPONENTS:
        getattr(parts, name).save_pretrained(folder / name)
    entries = dataclasses.asdict(index)
    for key in BASES:
        entries[key] = _entry(entries[key], folder)
    (folder / INDEX_FILE).write_text(yaml.safe_dump(entries, sort_keys=False))
    write_pipeline_files(folder)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # the bases never change: a hard link costs no space
    except OSError:
        shutil.copy2(src, dst)


def bundle(folder: str | Path) -> None:
    """Copy the bases into `folder`/bases/ and point weights.yaml there: the folder becomes self-contained."""
    folder = check_weights_folder(str(folder), "WEIGHTS")
    index = read_index(folder)
    entries = dataclasses.asdict(index)
    for name in needed_bases(index):
        if not entries[name]:
            continue
        source, target = resolve(folder, entries[name], name), folder / BUNDLE_DIR / name
        if source != target.resolve():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target, copy_function=_link_or_copy)
            log.info("%s: copied %s", name, source)
        entries[name] = f"{BUNDLE_DIR}/{name}"
    tmp = folder / f".{INDEX_FILE}.tmp"
    tmp.write_text(yaml.safe_dump(entries, sort_keys=False))
    os.replace(tmp, folder / INDEX_FILE)


def push(folder: str | Path, repo_id: str, private: bool = False) -> str:
    """Upload a weights folder to the Hugging Face hub as model repo `repo_id` (created if needed); its URL.

    Refused (ConfigError) while weights.yaml names a base by a path of this machine: `bundle` first, or
    name the bases by hub id, so that the pulled folder finds them."""
    folder = check_weights_folder(str(folder), "WEIGHTS", bases=False)
    index = read_index(folder)
    local = [name for name in BASES if Path(getattr(index, name)).is_absolute()]
    if local:
        raise ConfigError(f"{folder / INDEX_FILE} names {', '.join(local)} by a path on this machine, which a pulled copy "
                          f"would not find: run `hallo-weights bundle {folder}` first (or name them by hub id)")
    from huggingface_hub import HfApi

    try:
        api = HfApi()
        url = api.create_repo(repo_id, exist_ok=True, private=private)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=f"hallo-forge weights ({index.preset})")
    except Exception as err:  # noqa: BLE001 - offline, refused, no token: all "did not arrive"
        raise ConfigError(f"could not push {folder} to {repo_id}: {hub.network_help(err)}") from err
    return str(url)


def pull(repo_id: str, to: str | Path) -> Path:
    """Download the weights folder `repo_id[@revision]` into `to` and check it (bases are resolved when used)."""
    from huggingface_hub import snapshot_download

    match = hub.HUB_ID.match(repo_id)
    if not match or match["sub"]:
        raise ConfigError(f"{repo_id!r} is not a hub model id (owner/name[@revision])")
    try:
        snapshot_download(match["repo"], revision=match["revision"], local_dir=str(to), ignore_patterns=hub.IGNORED)
    except Exception as err:  # noqa: BLE001 - as in push
        raise ConfigError(f"could not pull {repo_id}: {hub.network_help(err)}") from err
    return check_weights_folder(str(to), "WEIGHTS", bases=False)


def load_net(folder: str | Path, dtype: torch.dtype = torch.float32) -> HalloNet:
    """The five modules of a weights folder, computing as its weights.yaml `behaviour` says."""
    behaviour = read_index(folder).behaviour
    parts = {name: COMPONENT_CLASSES[name].from_pretrained(Path(folder) / name, torch_dtype=dtype) for name in COMPONENTS}
    return HalloNet(HalloModules(**parts), behaviour)


def load_vae(folder: str | Path, dtype: torch.dtype = torch.float32) -> AutoencoderKL:
    return AutoencoderKL.from_pretrained(str(folder), torch_dtype=dtype)


if __name__ == "__main__":  # the command is model/weights_cli.py, on top: the library does not import it
    print(f"error: `python -m model.weights` moved: use `hallo-weights {' '.join(sys.argv[1:])}` "
          "(`python -m model.weights_cli` in a clone; docs/install.md)", file=sys.stderr)
    sys.exit(2)
