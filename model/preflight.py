"""Start-up checks of generation: every input checked, in one line and exit 2, before any model loads.

The weights folder and the bases it names are complete (local folders or hub ids), the device
exists, the image and the audio can be read, the output can be written, and the image shows a face
(without one, generation would animate a centre crop: only with `--allow-no-face`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from foundation.config import ConfigError
from model.generate_config import GenerateConfig
from model.portrait import Portrait, prepare_portrait
from model.weights import WeightsIndex, check_weights_folder, read_index

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class GenerationInputs:
    weights: Path  # the local weights folder (a hub id resolved)
    index: WeightsIndex
    device: torch.device
    dtype: torch.dtype
    portrait: Portrait


def resolve_device(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    """The torch device and dtype `device`/`dtype` ask for; ConfigError when that device is not there."""
    try:
        chosen = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                              "cpu" if device == "auto" else device)
    except RuntimeError as err:
        raise ConfigError(f"config key 'device': {device!r} is not a torch device (cpu, cuda, cuda:1, ...)") from err
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (chosen.index or 0) >= count:
            raise ConfigError(f"config key 'device': {device} asked for, but torch sees {count} CUDA device(s)")
    elif chosen.type != "cpu":
        raise ConfigError(f"config key 'device': {device!r}: generation runs on cpu or cuda")
    if dtype == "auto":
        return chosen, torch.float16 if chosen.type == "cuda" else torch.float32
    return chosen, DTYPES[dtype]


def read_image(path: str | Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ConfigError(f"config key 'image': cannot read an image from {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def check_audio(path: str) -> None:
    try:
        with av.open(path) as container:
            if not container.streams.audio:
                raise ConfigError(f"config key 'audio': {path} has no audio stream")
    except (av.error.FFmpegError, OSError) as err:
        raise ConfigError(f"config key 'audio': cannot open {path}: {err}".splitlines()[0]) from err


def check_out(path: str) -> None:
    parent = Path(path).resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"config key 'out': cannot create {parent}: {err.strerror}") from err
    if Path(path).is_dir() or not os.access(parent, os.W_OK):
        raise ConfigError(f"config key 'out': cannot write {path}")


def check_generation(cfg: GenerateConfig) -> GenerationInputs:
    """Every check of the module docstring, cheapest first; the face search comes last."""
    weights = check_weights_folder(cfg.weights, "weights")
    index = read_index(weights)
    device, dtype = resolve_device(cfg.device, cfg.dtype)
    image = read_image(cfg.image)
    check_audio(cfg.audio)
    check_out(cfg.out)
    portrait = prepare_portrait(image, index.resolution)
    if portrait.landmarks is None and not cfg.allow_no_face:
        raise ConfigError(f"no face found in {cfg.image}: generation animates a portrait; pass --allow-no-face "
                          "to animate a centre crop of the image anyway")
    return GenerationInputs(weights, index, device, dtype, portrait)
