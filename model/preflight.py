"""Start-up checks of generation: every input checked, in one line and exit 2, before any model loads.

The weights folder and the bases it names are complete (local folders or hub ids), the audio encoder
is the one the weights were trained on (`check_audio_encoder`), the device exists, the image and the audio can be read, the output can be written, and the image shows a face
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

from foundation import hub
from foundation.audio_encoder import describe, encoder_record, same_encoder, same_shape
from foundation.audio_features import WAV2VEC2_FILES
from foundation.config import ConfigError
from model.generate_config import GenerateConfig
from model.portrait import Portrait, prepare_portrait
from model.weights import WeightsIndex, check_weights_folder, read_index, resolve

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class GenerationInputs:
    weights: Path  # the local weights folder (a hub id resolved)
    index: WeightsIndex
    device: torch.device
    dtype: torch.dtype
    portrait: Portrait
    audio_encoder: Path | None = None  # local folder of the audio encoder (None: weights.yaml's wav2vec2)


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


def check_audio_encoder(cfg: GenerateConfig, weights: Path, index: WeightsIndex) -> Path:
    """The audio encoder's local folder: `audio_encoder`, else the one weights.yaml names; refused when its weights
    are not those recorded in weights.yaml's audio_encoder (unless allow_other_audio_encoder, and even then when its
    shape differs). Folders without a record (written before encoders were recorded) pass with the named one."""
    if cfg.audio_encoder:
        folder = hub.model_folder(cfg.audio_encoder, "audio_encoder", WAV2VEC2_FILES)
    else:
        folder = resolve(weights, index.wav2vec2, "wav2vec2")
    recorded = index.audio_encoder
    if not recorded:
        return folder
    found = encoder_record(folder, cfg.audio_encoder or index.wav2vec2)
    if not same_shape(found, recorded):
        raise ConfigError(f"audio encoder {describe(found)} gives features of another shape than {cfg.weights} was "
                          f"trained on ({describe(recorded)})")
    if not same_encoder(found, recorded) and not cfg.allow_other_audio_encoder:
        raise ConfigError(f"audio encoder {describe(found)} is not the one {cfg.weights} was trained on "
                          f"({describe(recorded)}): use that one, or pass --set allow_other_audio_encoder=true")
    return folder


def check_generation(cfg: GenerateConfig) -> GenerationInputs:
    """Every check of the module docstring, cheapest first; the face search comes last."""
    weights = check_weights_folder(cfg.weights, "weights")
    index = read_index(weights)
    device, dtype = resolve_device(cfg.device, cfg.dtype)
    image = read_image(cfg.image)
    check_audio(cfg.audio)
    check_out(cfg.out)
    audio_encoder = check_audio_encoder(cfg, weights, index)  # hashes the encoder's weights
    portrait = prepare_portrait(image, index.resolution)
    if portrait.landmarks is None and not cfg.allow_no_face:
        raise ConfigError(f"no face found in {cfg.image}: generation animates a portrait; pass --allow-no-face "
                          "to animate a centre crop of the image anyway")
    return GenerationInputs(weights, index, device, dtype, portrait, audio_encoder)
