"""Encode accepted clips into WebDataset samples: the face crops as H.264, the speech as WAV."""
from __future__ import annotations

import io
from fractions import Fraction
from typing import Iterable, Mapping, Optional

import av
import numpy as np
import soundfile as sf

from foundation import schema


def encode_video(frames: Iterable[np.ndarray], fps: int, crf: int) -> bytes:
    """H.264 yuv420p mp4 in memory; no intermediate files."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = None
        for frame in frames:
            if stream is None:
                stream = container.add_stream("libx264", rate=Fraction(fps))
                stream.width, stream.height = frame.shape[1], frame.shape[0]
                stream.pix_fmt = "yuv420p"
                # One thread keeps the bytes deterministic across runs (resume must not change samples).
                stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        if stream is None:
            raise ValueError("no frames to encode")
        container.mux(stream.encode(None))
    return buf.getvalue()


def encode_wav(audio: np.ndarray, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def build_sample(
    meta: schema.ClipMeta,
    crops: Iterable[np.ndarray],
    landmarks_crop: np.ndarray,
    audio: np.ndarray,
    crf: int,
    annotations: Mapping[str, bytes],
    vocals: Optional[np.ndarray] = None,
) -> dict[str, bytes | str]:
    """One shard sample: the cropped frames as H.264, the audio (and its separated vocals) as WAV, landmarks,
    metadata and annotations."""
    return {
        "__key__": meta.clip_id,
        schema.KEY_VIDEO: encode_video(crops, meta.fps, crf),
        schema.KEY_AUDIO: encode_wav(audio, meta.sample_rate),
        schema.KEY_LANDMARKS: schema.encode_npy(landmarks_crop.astype(np.float16)),
        schema.KEY_META: meta.to_json(),
        **({schema.KEY_VOCALS: encode_wav(vocals, meta.sample_rate)} if vocals is not None else {}),
        **annotations,
    }
