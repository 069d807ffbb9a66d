"""A generation-ready weights folder: the five trained modules plus an index of the frozen bases.

    WEIGHTS/
      weights.yaml        WeightsIndex: sizes and where the VAE, wav2vec2 and insightface models are
      reference_unet/     diffusers save_pretrained of each trainable module
      denoising_unet/
      face_locator/
      image_proj/
      audio_proj/

`python -m model.pretrained init` writes one from pretrained bases; training exports into the same
layout with `save_weights`. Relative paths in weights.yaml are relative to the folder.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from diffusers import AutoencoderKL

from foundation.config import ConfigError, load_config, opt, section
from model.behaviour import ModelBehaviour
from model.net import COMPONENT_CLASSES, COMPONENTS, HalloModules, HalloNet

INDEX_FILE = "weights.yaml"


@dataclass
class WeightsIndex:
    preset: str = opt("sd15", "model preset the modules were built with (informational)")
    resolution: int = opt(512, "square pixel resolution the model generates")
    clip_frames: int = opt(16, "frames generated per clip")
    motion_frames: int = opt(2, "previous frames carried into the next clip")
    fps: int = opt(25, "video frame rate (the audio features are aligned to it)")
    vae: str = opt("", "AutoencoderKL folder (sd-vae-ft-mse)")
    wav2vec2: str = opt("", "wav2vec2 folder (model + feature extractor)")
    insightface: str = opt("", "folder with the face detector and ArcFace .onnx files")
    behaviour: ModelBehaviour = section(ModelBehaviour, "how these weights compute (model/behaviour.py)")

    def validate(self) -> None:
        if self.resolution % 8 or self.resolution <= 0:
            raise ConfigError("config key 'resolution' must be a positive multiple of 8")
        if self.clip_frames <= 0 or self.motion_frames < 0:
            raise ConfigError("config keys 'clip_frames' > 0 and 'motion_frames' >= 0 required")


def read_index(folder: str | Path) -> WeightsIndex:
    path = Path(folder) / INDEX_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a weights folder (see `python -m model.pretrained init`)")
    return load_config(WeightsIndex, path)


def resolve(folder: str | Path, entry: str) -> Path:
    """A path from the index, relative to the weights folder unless absolute."""
    if not entry:
        raise ConfigError(f"{Path(folder) / INDEX_FILE} leaves a base model path empty")
    return (Path(folder) / entry).resolve()


def save_weights(modules: HalloModules | HalloNet, folder: str | Path, index: WeightsIndex) -> None:
    """Write the five modules and the index; base paths are stored relative to the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    parts = modules.parts() if isinstance(modules, HalloNet) else modules
    for name in COMPONENTS:
        getattr(parts, name).save_pretrained(folder / name)
    entries = dataclasses.asdict(index)
    for key in ("vae", "wav2vec2", "insightface"):
        entries[key] = os.path.relpath(Path(entries[key]).resolve(), folder.resolve())
    (folder / INDEX_FILE).write_text(yaml.safe_dump(entries, sort_keys=False))


def load_net(folder: str | Path, dtype: torch.dtype = torch.float32) -> HalloNet:
    """The five modules of a weights folder, computing as its weights.yaml `behaviour` says."""
    behaviour = read_index(folder).behaviour
    parts = {name: COMPONENT_CLASSES[name].from_pretrained(Path(folder) / name, torch_dtype=dtype) for name in COMPONENTS}
    return HalloNet(HalloModules(**parts), behaviour)


def load_vae(folder: str | Path, dtype: torch.dtype = torch.float32) -> AutoencoderKL:
    return AutoencoderKL.from_pretrained(str(folder), torch_dtype=dtype)
