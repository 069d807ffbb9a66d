"""Vocal separation as Hallo does it: audio-separator running the MDX-Net model Kim_Vocal_2.

Curation separates every clip that passed the cheaper filters, generation the driving audio (when the
weights' behaviour asks for it), so that wav2vec2 hears the same kind of audio in both. The model
folder is audio-separator's own `model_file_dir` layout:

    BASE/uvr/Kim_Vocal_2.onnx            the MDX-Net model (UVR's model repository; Hallo's HF repo)
    BASE/uvr/download_checks.json        UVR's model list (audio-separator finds the model type in it)
    BASE/uvr/mdx_model_data.json         UVR's model parameters, keyed by the MD5 of the model file
    BASE/uvr/vr_model_data.json

`hallo-weights fetch` downloads them; `python -m examples.standins` writes a stand-in
with the same contract. audio-separator itself loads the model (file hash -> parameters) and runs its
MDX code (STFT, chunking with overlap, the ONNX session, inverse STFT, compensation); only the file
writing around it is left out: the clip goes in and comes out as an array.
"""
from __future__ import annotations

import functools
import logging
import platform
import sys
import types
from pathlib import Path
from typing import Union

import numpy as np
from scipy.signal import resample_poly

log = logging.getLogger(__name__)

MODEL_FILE = "Kim_Vocal_2.onnx"
MODEL_DATA_FILES = ("download_checks.json", "mdx_model_data.json", "vr_model_data.json")
MODEL_RATE = 44100  # MDX-Net models run on 44.1 kHz stereo
NAME = "audio-separator:" + MODEL_FILE  # recorded in the clips' metadata and the manifest


def model_in(base: Union[str, Path]) -> Path:
    """Where `hallo-weights fetch` puts the separator model inside a base folder."""
    return Path(base) / "uvr" / MODEL_FILE


def missing_files(model: Union[str, Path]) -> list[str]:
    """The files audio-separator needs beside `model` (and the model itself) that are not there."""
    model = Path(model)
    return [str(p) for p in (model, *(model.parent / name for name in MODEL_DATA_FILES)) if not p.is_file()]


def _import_separator() -> type:
    """audio-separator's Separator class, importable beside a CPU torch without torchvision.

    audio-separator's MDX module imports onnx2torch at the top, and onnx2torch imports torchvision (for
    its NMS / RoIAlign converters); PyPI's torchvision wheels are CUDA builds that break a CPU torch.
    onnx2torch is only used when `segment_size` differs from the model's dim_t, which this module never
    asks for (the model runs in onnxruntime), so when it cannot be imported a placeholder that says so
    takes its name.
    """
    try:
        import onnx2torch  # noqa: F401
    except (ImportError, RuntimeError) as err:  # absent, or a build that does not fit this torch
        placeholder, why = types.ModuleType("onnx2torch"), str(err)  # `err` is unbound once the block ends

        def convert(*_args: object, **_kwargs: object) -> None:
            raise RuntimeError(f"onnx2torch is unavailable ({why}): run MDX models with segment_size = dim_t")

        placeholder.convert = convert  # type: ignore[attr-defined]
        sys.modules["onnx2torch"] = placeholder
    from audio_separator.separator import Separator

    return Separator


class MdxVocals:
    """A `VocalSeparator` (mono float32 in, vocals of the same length and rate out) over audio-separator."""

    def __init__(self, model: Union[str, Path]) -> None:
        model = Path(model)
        missing = missing_files(model)
        if missing:
            raise FileNotFoundError(f"vocal separator files missing: {', '.join(missing)} "
                                    "(run `hallo-weights fetch`)")
        separator_class = _import_separator()
        # info_only skips the start-up probes, one of which refuses to run without an ffmpeg binary
        # (used only to write stems with pydub; stems are never written here). The device is set up as
        # the full start-up would: CUDA in torch and onnxruntime when there, else the CPU.
        separator = separator_class(log_level=logging.WARNING, model_file_dir=str(model.parent),
                                    output_dir=str(model.parent), output_single_stem="Vocals", info_only=True)
        separator.setup_torch_device(platform.uname())
        separator.load_model(model.name)
        self.mdx = separator.model_instance
        self.name = NAME

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        from audio_separator.separator.uvr_lib_v5 import spec_utils

        audio = np.asarray(audio, np.float32).reshape(-1)
        if audio.size == 0:
            return audio
        up = resample_poly(audio, MODEL_RATE, sample_rate).astype(np.float32)
        # what audio-separator's MDX `separate` does between reading the file and writing the stem
        mix = self.mdx.prepare_mix(up)  # mono -> (2, samples)
        mix = spec_utils.normalize(wave=mix, max_peak=self.mdx.normalization_threshold,
                                   min_peak=self.mdx.amplification_threshold)
        vocals = self.mdx.demix(mix).mean(axis=0)
        down = resample_poly(vocals, sample_rate, MODEL_RATE).astype(np.float32)
        return np.pad(down[:audio.size], (0, max(0, audio.size - down.size)))


@functools.lru_cache(maxsize=2)
def cached_separator(model: str) -> MdxVocals:
    """One separator per model file and process (loading parses audio-separator's model lists and hashes the file)."""
    return MdxVocals(model)


def read_vocals(path: Union[str, Path], model: Union[str, Path], sample_rate: int) -> np.ndarray:
    """The vocals of an audio file as (1, samples) float32 at `sample_rate`: separated from the file decoded at
    the model's own rate, as Hallo separates before resampling to wav2vec2's."""
    from foundation.media_io import read_audio

    audio, _ = read_audio(path, MODEL_RATE, mono=True)
    vocals = cached_separator(str(Path(model).resolve()))(audio[0], MODEL_RATE)
    return resample_poly(vocals, sample_rate, MODEL_RATE).astype(np.float32)[None]


def model_hash(model: Union[str, Path]) -> str:
    """The key of a model in UVR's model data: the MD5 of its last 10,240,000 bytes (of all of a smaller file)."""
    import hashlib

    with open(model, "rb") as f:
        size = f.seek(0, 2)
        f.seek(max(0, size - 10_240_000))
        return hashlib.md5(f.read()).hexdigest()
