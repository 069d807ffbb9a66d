"""Decode just the frames a training sample needs from a clip's mp4 bytes."""
from __future__ import annotations

import io

import av
import numpy as np
import torch


def decode_frames(mp4: bytes, indices: list[int], size: int) -> torch.Tensor:
    """Frames at `indices` as (k, 3, size, size) float in [-1, 1]; decoding stops after the last one."""
    wanted = sorted(set(indices))
    last = wanted[-1]
    found: dict[int, np.ndarray] = {}
    with av.open(io.BytesIO(mp4)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                found[index] = frame.to_ndarray(width=size, height=size, format="rgb24")
            if index >= last:
                break
    missing = [i for i in wanted if i not in found]
    if missing:
        raise ValueError(f"clip has no frames {missing[:3]} (it decodes to fewer frames than its metadata says)")
    stack = np.stack([found[i] for i in indices])
    return torch.from_numpy(stack).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
