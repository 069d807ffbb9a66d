"""The WebDataset sample schema: the one contract between curation (writer) and training (reader).

A sample is one clip. Keys inside the tar are `<clip_id>.<ext>`:

| ext                  | content                                                                    |
|----------------------|----------------------------------------------------------------------------|
| `mp4`                | H.264 video, `faces.output_size` square, 25 fps, no audio track            |
| `wav`                | 16 kHz mono PCM-16 audio, same duration as the video, in sync (corrected)  |
|                      | as the source has it (the mixture: speech with any music or noise)         |
| `vocals.wav`         | the same span after vocal separation, what the audio features were         |
|                      | computed from; present when `ClipMeta.vocal_separator` is set              |
| `landmarks.npy`      | float16 (frames, 478, 2): face-mesh points in output-crop pixels          |
| `json`               | `ClipMeta`: source, span, crop boxes, metrics, sync, provenance            |
| `audio_features.npy` | float16 (frames, layers, dim): wav2vec2 hidden states of every transformer |
|                      | layer at 25 fps, one row per video frame (foundation.audio_features)           |
| `face_emb.npy`       | float32 (512,): insightface ArcFace embedding of the clip's face, zeros    |
|                      | when no face was detected (`ClipMeta.face_found`; foundation.identity)         |
| `face_mask.png`      | uint8 (size, size) 0/255: the face region over the clip, face-locator input |
| `region_masks.npy`   | float16 (3, 64, 64) in [0, 1]: soft pose (background), face-minus-lip and  |
|                      | lip masks for the hierarchical audio attention (foundation.masks)              |

The last four (`ANNOTATION_KEYS`) are present when `ClipMeta.annotated` (curation's default).
`SCHEMA_VERSION` is bumped whenever a key is added or changes meaning; readers check it.
Version 2 added the annotation keys and the speech/sync fields of `ClipMeta`; version 3 added
`ClipMeta.sync_verified`; version 4 added `vocals.wav`, `ClipMeta.audio_encoder` (the record of the encoder
that made `audio_features.npy`, foundation.audio_encoder) and the clip's spoken `language` with its probability.
"""
from __future__ import annotations

import io
import json
import struct
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import cv2
import numpy as np

SCHEMA_VERSION = 4

KEY_VIDEO = "mp4"
KEY_AUDIO = "wav"
KEY_VOCALS = "vocals.wav"
KEY_LANDMARKS = "landmarks.npy"
KEY_META = "json"
KEY_AUDIO_FEATURES = "audio_features.npy"
KEY_FACE_EMB = "face_emb.npy"
KEY_FACE_MASK = "face_mask.png"
KEY_REGION_MASKS = "region_masks.npy"
REQUIRED_KEYS = (KEY_VIDEO, KEY_AUDIO, KEY_LANDMARKS, KEY_META)
ANNOTATION_KEYS = (KEY_AUDIO_FEATURES, KEY_FACE_EMB, KEY_FACE_MASK, KEY_REGION_MASKS)
EMBED_DIM = 512
REGION_CHANNELS = ("pose", "face", "lip")  # order of region_masks.npy


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
    crop_boxes: list[list[float]]  # per frame [x0, y0, side] in display pixels (upright, square), smoothed
    metrics: dict[str, float]
    provenance: dict[str, Any] = field(default_factory=dict)
    sync_backend: str = ""  # scorer that measured metrics sync_offset / sync_confidence
    # the scorer confirmed lips and speech match (SyncNet); False: kept by the weight-free fallback,
    # which cannot confirm sync (training's data.unverified_sync decides whether to use such clips)
    sync_verified: bool = False
    # the stored wav starts this many frames later in the source than the video (the detected
    # sync offset, corrected; negative: earlier), so audio and lips match
    audio_shift_frames: int = 0
    # separator whose vocals (`vocals.wav`) the speech, sync and audio-feature steps used; None: the mixture
    vocal_separator: Optional[str] = None
    annotated: bool = False  # the sample carries ANNOTATION_KEYS
    face_found: bool = False  # face_emb.npy is of a detected face (False: the zero embedding)
    audio_encoder: Optional[dict[str, Any]] = None  # record of the encoder behind audio_features.npy (annotated clips)
    language: Optional[str] = None  # spoken language (Whisper code), None when curation had no language model
    language_prob: Optional[float] = None
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


def decode_npy(raw: bytes | memoryview) -> np.ndarray:
    return np.load(io.BytesIO(raw), allow_pickle=False)


def npy_view(raw: bytes | memoryview) -> np.ndarray:
    """A read-only array over the .npy bytes without copying them (index it to copy just some rows)."""
    head = io.BytesIO(memoryview(raw)[:1 << 16])  # the header: format 1.0 caps it at 64 KiB
    version = np.lib.format.read_magic(head)
    header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if header is None:
        return decode_npy(raw)
    shape, fortran, dtype = header(head)
    array = np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape)), offset=head.tell())
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def encode_png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"cannot encode a {image.shape} {image.dtype} array as PNG")
    return buf.tobytes()


def decode_png(raw: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)


PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # by colour type, as decode_png returns them


def png_shape(raw: bytes) -> tuple[int, ...]:
    """The shape decode_png would return, read from the PNG's header (IHDR) without decoding."""
    if raw[:8] != b"\x89PNG\r\n\x1a\n" or raw[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    width, height = struct.unpack(">II", raw[16:24])
    channels = PNG_CHANNELS.get(raw[25], 0)
    return (height, width) if channels == 1 else (height, width, channels)


def _expect(meta: ClipMeta, what: str, ok: bool, got: Any) -> None:
    if not ok:
        raise ValueError(f"sample {meta.clip_id}: {what} {got} does not fit {meta.num_frames} frames of {meta.size} px")


def check_sample(sample: dict[str, Any], require_annotations: bool = True) -> ClipMeta:
    """Validate a raw webdataset sample dict (bytes values) and return its metadata.

    Training needs the annotations, so by default a sample without them is an error.
    """
    missing = [k for k in REQUIRED_KEYS if k not in sample]
    if missing:
        raise ValueError(f"sample {sample.get('__key__')} lacks keys {missing}")
    meta = ClipMeta.from_json(sample[KEY_META])
    frames = meta.num_frames
    landmarks = npy_view(sample[KEY_LANDMARKS]).shape  # shapes only: no copy of the arrays
    _expect(meta, "landmarks", landmarks == (frames, 478, 2), landmarks)
    if meta.vocal_separator and KEY_VOCALS not in sample:
        raise ValueError(f"sample {meta.clip_id} was separated by {meta.vocal_separator} but lacks {KEY_VOCALS}")
    if not (require_annotations or meta.annotated):
        return meta
    missing = [k for k in ANNOTATION_KEYS if k not in sample]
    if missing:
        raise ValueError(f"sample {meta.clip_id} lacks annotation keys {missing}")
    features = npy_view(sample[KEY_AUDIO_FEATURES]).shape
    _expect(meta, "audio features", len(features) == 3 and features[0] == frames, features)
    embedding = npy_view(sample[KEY_FACE_EMB]).shape
    _expect(meta, "face embedding", embedding == (EMBED_DIM,), embedding)
    face_mask = png_shape(sample[KEY_FACE_MASK])
    _expect(meta, "face mask", face_mask == (meta.size, meta.size), face_mask)
    regions = npy_view(sample[KEY_REGION_MASKS]).shape
    _expect(meta, "region masks", len(regions) == 3 and regions[0] == len(REGION_CHANNELS), regions)
    return meta
