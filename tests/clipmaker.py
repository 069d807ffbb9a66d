"""Tiny synthetic H.264/AAC clips for tests of the media plumbing (real faces come from examples.fixtures)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import av
import numpy as np


def grey_ramp(i: int) -> np.ndarray:
    """Frame i is uniformly grey with value 8*i (mod 256), so a decoded frame tells its source index."""
    return np.full((48, 64, 3), (8 * i) % 256, np.uint8)


def make_clip(
    path: Path,
    fps: int = 10,
    seconds: float = 1.0,
    sample_rate: Optional[int] = 16000,
    frame_fn: Callable[[int], np.ndarray] = grey_ramp,
    tone_hz: float = 440.0,
) -> Path:
    """An mp4 with `frame_fn(i)` frames at `fps`; a tone track unless sample_rate is None."""
    first = frame_fn(0)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = first.shape[1], first.shape[0], "yuv420p"
        video.options = {"qp": "0"}  # lossless, so tests can read frame values back exactly
        audio = None
        if sample_rate:
            audio = container.add_stream("aac", rate=sample_rate)
            audio.layout = "mono"
        for i in range(int(round(seconds * fps))):
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame_fn(i), format="rgb24")))
        if audio is not None:
            t = np.arange(int(seconds * sample_rate)) / sample_rate
            tone = (0.3 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)[None]
            for start in range(0, tone.shape[1], 1024):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, start:start + 1024]),
                                                   format="fltp", layout="mono")
                frame.sample_rate, frame.pts = sample_rate, start
                container.mux(audio.encode(frame))
            container.mux(audio.encode())
        container.mux(video.encode())
    return path
