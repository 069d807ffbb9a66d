"""Does training learn? Generate a curated clip back from its first frame and its own audio, and measure
the video against the real clip. `make demo` prints these numbers; tests/training/test_learning.py
asserts on them.

- PSNR over every frame at the model's resolution, against the real frames as training decodes them;
- the same for the baseline of repeating the first frame (a model that ignores the audio and the
  motion can reach it, so a learning model must beat it);
- mouth following: the correlation over time between the generated and the real clip's mean
  brightness inside the lip box (foundation.masks' lip region over the clip's landmarks). It compares
  mouth with mouth, whatever drove the real one.

Generation runs as a user runs it: `python -m model.generate`.
"""
from __future__ import annotations

import io
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import soundfile as sf

from foundation import schema
from foundation.masks import region_boxes
from foundation.media_io import read_video
from model.weights import read_index
from training.data import expand_shards, shard_samples
from training.frames import decode_frames

ROOT = Path(__file__).resolve().parents[1]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two 8-bit videos (or images) of the same shape."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


@dataclass
class Match:
    psnr: float  # dB, whole frames
    mouth_psnr: float  # dB, inside the lip box
    mouth_corr: float  # correlation of the mean lip-box brightness over time with the real clip's

    def __str__(self) -> str:
        return (f"PSNR {self.psnr:.2f} dB (mouth {self.mouth_psnr:.2f} dB), "
                f"mouth-brightness correlation {self.mouth_corr:.3f}")


@dataclass
class RealClip:
    key: str
    frames: np.ndarray  # (T, S, S, 3) uint8 at the model's resolution, decoded as training decodes them
    first: np.ndarray  # (size, size, 3) uint8: the first frame at the clip's own resolution
    audio: np.ndarray  # (samples,) float32
    sample_rate: int
    lip_box: tuple[int, int, int, int]  # x0, y0, x1, y1 in `frames` pixels
    face_box: tuple[int, int, int, int]  # the same for the face, over the whole clip

    @classmethod
    def from_shards(cls, shards: list[str], size: int, key: str | None = None) -> "RealClip":
        """The sample `key` (default: the first) of the shards, at `size` pixels."""
        samples = (r for url in expand_shards(shards) for r in shard_samples(url, strict=True))
        raw = next((r for r in samples if key in (None, r["__key__"])), None)
        if raw is None:
            raise ValueError(f"no sample {key or ''} in {shards}")
        meta = schema.check_sample(raw)
        frames = decode_frames(raw[schema.KEY_VIDEO], list(range(meta.num_frames)), size)
        with av.open(io.BytesIO(raw[schema.KEY_VIDEO])) as container:
            first = next(container.decode(video=0)).to_ndarray(format="rgb24")
        audio, rate = sf.read(io.BytesIO(raw[schema.KEY_AUDIO]), dtype="float32")
        landmarks = schema.decode_npy(raw[schema.KEY_LANDMARKS]).astype(np.float32) * (size / meta.size)
        face, lip = region_boxes(landmarks, (size, size))
        pixels = frames.permute(0, 2, 3, 1).numpy()  # uint8 RGB
        return cls(raw["__key__"], pixels, first, audio, rate, _pixel_box(lip), _pixel_box(face))

    def write_inputs(self, folder: Path) -> tuple[Path, Path]:
        """The first frame (png) and the audio (wav): what generation gets."""
        folder.mkdir(parents=True, exist_ok=True)
        image, audio = folder / f"{self.key}.png", folder / f"{self.key}.wav"
        cv2.imwrite(str(image), cv2.cvtColor(self.first, cv2.COLOR_RGB2BGR))
        sf.write(audio, self.audio, self.sample_rate)
        return image, audio

    def still(self) -> np.ndarray:
        """The baseline: the first frame repeated for the whole clip."""
        return np.repeat(self.frames[:1], len(self.frames), axis=0)

    def _mouth(self, video: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.lip_box
        return video[:, y0:y1, x0:x1]

    def compare(self, video: np.ndarray) -> Match:
        if video.shape != self.frames.shape:
            raise ValueError(f"generated video {video.shape} vs real clip {self.frames.shape}")
        generated, real = self._mouth(video), self._mouth(self.frames)
        brightness = [m.reshape(len(m), -1).mean(axis=1) for m in (generated, real)]
        still = any(b.std() == 0 for b in brightness)
        return Match(psnr(video, self.frames), psnr(generated, real),
                     0.0 if still else float(np.corrcoef(*brightness)[0, 1]))


def _pixel_box(box: np.ndarray) -> tuple[int, int, int, int]:
    """A float x0, y0, x1, y1 box widened to whole pixels."""
    return int(np.floor(box[0])), int(np.floor(box[1])), int(np.ceil(box[2])), int(np.ceil(box[3]))


def generate(weights: Path, image: Path, audio: Path, out: Path, *args: str) -> np.ndarray:
    """`python -m model.generate` (extra CLI args passed on); returns the video's frames."""
    cmd = [sys.executable, "-m", "model.generate", "--weights", str(weights), "--image", str(image),
           "--audio", str(audio), "--out", str(out), "--set", "progress=false", *args]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"generation failed ({result.returncode}): {result.stderr[-3000:]}")
    return read_video(out, read_index(weights).fps)
