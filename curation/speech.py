"""Speech presence (silero-vad), speech quality (DNSMOS) and vocal separation: models that ship in
their wheels, but for the separator's, which `hallo-weights fetch` puts in the base folder.

Vocal separation is audio-separator running MDX-Net Kim_Vocal_2 (foundation.vocals), as in Hallo; it
is on when its files are found (`speech.separation`). To plug another separator, point
`speech.separator` at a factory `module:function` that returns a `VocalSeparator`;
`speech.separator_args` are passed to it as keyword arguments.
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

import numpy as np
import torch

from curation.config import SpeechConfig
from foundation.config import ConfigError
from foundation.vocals import NAME as MDX_NAME
from foundation.vocals import MdxVocals, missing_files, model_in

SEPARATION_WARNING = ("no vocal separator model at {path}: speech, lip sync, DNSMOS and the audio features judge the "
                      "unseparated mixture (run `hallo-weights fetch`, or set speech.separation=off)")
DNSMOS_RATE = 16000  # the rate DNSMOS's models were trained on


class VocalSeparator(Protocol):
    """Returns the vocals of a mono float32 clip: same sample rate, same length."""

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray: ...


def no_separation(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """The default: the audio as it is."""
    return audio


def separator_factory(spec: str) -> Callable[..., VocalSeparator]:
    """Import the factory named by `speech.separator` ('package.module:function')."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"speech.separator {spec!r} must look like 'package.module:factory'")
    return getattr(importlib.import_module(module_name), attr)


def load_separator(spec: Optional[str], args: Optional[dict[str, Any]] = None) -> VocalSeparator:
    """`None` -> `no_separation`; otherwise `factory(**args)` (built once per worker)."""
    return separator_factory(spec)(**(args or {})) if spec else no_separation


def separator_model(cfg: SpeechConfig, pretrained_dir: str) -> Path:
    return Path(cfg.separator_model) if cfg.separator_model else model_in(pretrained_dir)


def resolve_separation(cfg: SpeechConfig, pretrained_dir: str) -> SpeechConfig:
    """`auto` made `on` or `off` by whether the MDX model's files are there (so every worker does the same);
    `on` without them is a ConfigError. A plug-in separator (`speech.separator`) counts as there."""
    missing = [] if cfg.separator else missing_files(separator_model(cfg, pretrained_dir))
    if cfg.separation == "on" and missing:
        raise ConfigError(f"config key 'speech.separation' is on but {', '.join(missing)} not found "
                          "(run `hallo-weights fetch`, or set speech.separator_model)")
    if cfg.separation == "auto":
        return replace(cfg, separation="off" if missing else "on")
    return cfg


def make_separator(cfg: SpeechConfig, pretrained_dir: str) -> tuple[VocalSeparator, Optional[str]]:
    """The separator a resolved config asks for and the name clips record (None: no separation)."""
    if resolve_separation(cfg, pretrained_dir).separation == "off":
        return no_separation, None
    if cfg.separator:
        return load_separator(cfg.separator, cfg.separator_args), cfg.separator
    return MdxVocals(separator_model(cfg, pretrained_dir)), MDX_NAME


def separate(separator: VocalSeparator, audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Run a separator and check it kept the clip's length (the video frame count depends on it)."""
    vocals = np.asarray(separator(audio, sample_rate), np.float32).reshape(-1)
    if vocals.shape != audio.shape:
        raise ValueError(f"vocal separator returned {vocals.shape[0]} samples for {audio.shape[0]}")
    return vocals


@functools.cache
def _vad_model() -> torch.nn.Module:
    from silero_vad import load_silero_vad

    return load_silero_vad()  # TorchScript model from the wheel: no download


def speech_segments(audio: np.ndarray, sample_rate: int, cfg: SpeechConfig) -> list[tuple[int, int]]:
    """silero-vad's speech segments of the audio as [start, end) sample ranges."""
    from silero_vad import get_speech_timestamps

    if audio.size == 0:
        return []
    segments = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(audio, np.float32)), _vad_model(),
                                     threshold=cfg.vad_threshold, sampling_rate=sample_rate)
    return [(int(seg["start"]), int(seg["end"])) for seg in segments]


def speech_ratio(audio: np.ndarray, sample_rate: int, cfg: SpeechConfig) -> float:
    """Share of the clip's samples inside silero-vad speech segments (0 silent .. 1 all speech)."""
    if audio.size == 0:
        return 0.0
    voiced = sum(end - start for start, end in speech_segments(audio, sample_rate, cfg))
    return float(min(1.0, voiced / audio.size))


def dnsmos(audio: np.ndarray, sample_rate: int) -> dict[str, float]:
    """DNSMOS P.835 scores of a clip (1 bad .. 5 excellent): overall, speech signal, background.

    speechmos runs Microsoft's DNSMOS ONNX models, which ship in its wheel, on 9 s windows (a shorter
    clip is repeated to fill one).
    """
    from scipy.signal import resample_poly
    from speechmos import dnsmos as model

    audio = np.asarray(audio, np.float32).reshape(-1)
    if audio.size == 0:
        raise ValueError("DNSMOS of an empty clip")
    if sample_rate != DNSMOS_RATE:
        audio = resample_poly(audio, DNSMOS_RATE, sample_rate).astype(np.float32)
    scores = model.run(np.clip(audio, -1.0, 1.0), DNSMOS_RATE)
    return {"dnsmos_ovrl": float(scores["ovrl_mos"]), "dnsmos_sig": float(scores["sig_mos"]),
            "dnsmos_bak": float(scores["bak_mos"])}
