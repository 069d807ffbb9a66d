"""The WebDataset sample schema: the one contract between curation (writer) and training (reader).

A sample is one clip. Keys inside the tar are `<clip_id>.<ext>`:

| ext             | content                                                                  |
|-----------------|--------------------------------------------------------------------------|
| `mp4`           | H.264 video, `faces.output_size` square, 25 fps, no audio track          |
| `wav`           | 16 kHz mono PCM-16 speech, same duration as the video                    |
| `landmarks.npy` | float16 (frames, 478, 2): face-mesh points in output-crop pixels        |
| `json`          | `ClipMeta`: source, span in the source, crop boxes, metrics, provenance  |

`SCHEMA_VERSION` is bumped whenever a key is added or changes meaning; readers check it.
"""
from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SCHEMA_VERSION = 1

KEY_VIDEO = "mp4"
KEY_AUDIO = "wav"
KEY_LANDMARKS = "landmarks.npy"
KEY_META = "json"
REQUIRED_KEYS = (KEY_VIDEO, KEY_AUDIO, KEY_LANDMARKS, KEY_META)


@dataclass
class ClipMeta:
    clip_id: str
    source: str
    source_id: str
    start_s: float
    end_s: float
    num_frames: int
    fps: int
    sample_rate: int
    size: int
    crop_boxes: list[list[float]]  # per frame [x0, y0, side] in source pixels, after smoothing
    metrics: dict[str, float]
    provenance: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes | str | dict) -> "ClipMeta":
        data = raw if isinstance(raw, dict) else json.loads(raw)
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"sample schema version {version}, this reader expects {SCHEMA_VERSION}")
        return cls(**data)


def encode_npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def decode_npy(raw: bytes) -> np.ndarray:
    return np.load(io.BytesIO(raw), allow_pickle=False)


def check_sample(sample: dict[str, Any]) -> ClipMeta:
    """Validate a raw webdataset sample dict (bytes values) and return its metadata."""
    missing = [k for k in REQUIRED_KEYS if k not in sample]
    if missing:
        raise ValueError(f"sample {sample.get('__key__')} lacks keys {missing}")
    meta = ClipMeta.from_json(sample[KEY_META])
    landmarks = decode_npy(sample[KEY_LANDMARKS])
    if landmarks.shape != (meta.num_frames, 478, 2):
        raise ValueError(f"sample {meta.clip_id}: landmarks {landmarks.shape} for {meta.num_frames} frames")
    return meta
