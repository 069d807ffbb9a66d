"""Decode the frames training needs from a clip's mp4 bytes, as uint8.

DataLoader workers ship uint8 (a quarter of float32's bytes through the worker queue) and the
training step turns them into floats on its device (`to_unit_range`), where that is nearly free.
"""
from __future__ import annotations

import io
from typing import Iterator

import av
import numpy as np
import torch


def _decoded(mp4: bytes) -> Iterator[av.VideoFrame]:
    with av.open(io.BytesIO(mp4)) as container:
        yield from container.decode(video=0)


def _stacked(frames: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)


def _rgb(frame: av.VideoFrame, size: int) -> np.ndarray:
    return frame.to_ndarray(width=size, height=size, format="rgb24")


def decode_frames(mp4: bytes, indices: list[int], size: int) -> torch.Tensor:
    """Frames at `indices` as (k, 3, size, size) uint8 RGB; decoding stops after the last one."""
    wanted = sorted(set(indices))
    last = wanted[-1]
    found: dict[int, np.ndarray] = {}
    for index, frame in enumerate(_decoded(mp4)):
        if index in wanted:
            found[index] = _rgb(frame, size)
        if index >= last:
            break
    missing = [i for i in wanted if i not in found]
    if missing:
        raise ValueError(f"clip has no frames {missing[:3]} (it decodes to fewer frames than its metadata says)")
    return _stacked([found[i] for i in indices])


def frame_batches(mp4: bytes, size: int, batch: int) -> Iterator[torch.Tensor]:
    """Every frame of the clip in order, as (<= batch, 3, size, size) uint8 RGB chunks."""
    chunk: list[np.ndarray] = []
    for frame in _decoded(mp4):
        chunk.append(_rgb(frame, size))
        if len(chunk) == batch:
            yield _stacked(chunk)
            chunk = []
    if chunk:
        yield _stacked(chunk)


def to_unit_range(pixels: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 RGB -> `dtype` in [-1, 1] (the VAE's input range), on the tensor's device; computed in float32."""
    return pixels.float().div_(127.5).sub_(1.0).to(dtype)
