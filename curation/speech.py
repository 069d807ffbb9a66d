"""Speech presence (silero-vad, whose model ships inside its wheel) and the vocal-separation hook.

Vocal separation is off by default. To plug a real separator, point `speech.separator` at a factory
`module:function` that returns a `VocalSeparator`; `speech.separator_args` are passed to it as
keyword arguments (see the README for an audio-separator / Kim_Vocal_2 example).
"""
from __future__ import annotations

import functools
import importlib
from typing import Any, Callable, Optional, Protocol

import numpy as np
import torch

from curation.config import SpeechConfig


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
