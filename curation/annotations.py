"""Training annotations written into every accepted sample, so training never preprocesses video.

The definitions live in `foundation/` and are shared with generation: masks (`foundation.masks`), the
identity embedding (`foundation.identity`) and the 25 fps wav2vec2 features (`foundation.audio_features`)
of any wav2vec2-family encoder, whose record (`foundation.audio_encoder`) every sample carries.
The models load once per worker process (`Annotator`); `check_model_dirs` lets the entry point
fail at start-up when a folder is missing instead of failing every source. Model folders may be
local paths or Hugging Face hub ids (`foundation.hub`); unset, they are looked up in
`pretrained_dir` (default `pretrained/`, where `hallo-weights fetch` puts them).
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from foundation import hub, schema
from foundation.audio_encoder import Record, encoder_record
from curation.config import AnnotationsConfig
from foundation.audio_features import WAV2VEC2_FILES
from foundation.config import ConfigError

log = logging.getLogger(__name__)

IDENTITY_TRIES = 3  # frames (first, middle, last) tried until the detector finds the face


def model_dirs(cfg: AnnotationsConfig, base: str | Path) -> dict[str, str]:
    """{config key: folder or hub id} of the annotation models; unset keys point into the base folder."""
    return {"annotations.wav2vec2_dir": cfg.wav2vec2_dir or str(Path(base) / "wav2vec2"),
            "annotations.insightface_dir": cfg.insightface_dir or str(Path(base) / "insightface" / "models")}


def check_model_dirs(cfg: AnnotationsConfig, base: str | Path) -> dict[str, Path]:
    """{config key: local folder} of the annotation models (hub ids resolved); ConfigError naming the key
    when a folder is missing or lacks its files."""
    hint = ("get them with `hallo-weights fetch --to BASE` (or `hallo-standins --to BASE` for random "
            "stand-ins), or set annotations.enabled=false")
    needs = {"annotations.wav2vec2_dir": WAV2VEC2_FILES, "annotations.insightface_dir": hub.ONNX}
    folders = {}
    for key, ref in model_dirs(cfg, base).items():
        try:
            folders[key] = hub.model_folder(ref, key, needs[key])
        except ConfigError as err:
            if getattr(cfg, key.split(".")[1]):
                raise ConfigError(f"{err}; {hint}") from err
            raise ConfigError(f"config key '{key}' is not set and pretrained_dir has no usable model folder "
                              f"at {ref} ({err}); {hint}") from err
    return folders


def pin_model_dirs(cfg: AnnotationsConfig, base: str | Path) -> AnnotationsConfig:
    """Both model keys set, local folders as absolute paths (Ray workers run in another working directory);
    hub ids stay ids, so each worker resolves them through its own Hugging Face cache. `encoder` holds the
    audio encoder's record, so that the results fingerprint changes with its weights."""
    pinned = {key.split(".")[1]: str(Path(ref).resolve()) if Path(ref).exists() else ref
              for key, ref in model_dirs(cfg, base).items()}
    ref = pinned["wav2vec2_dir"]
    encoder = encoder_record(hub.resolve(ref, "annotations.wav2vec2_dir"), ref)
    return replace(cfg, **pinned, encoder=encoder)


class Annotator:
    """wav2vec2 and insightface, loaded once; `annotate` turns one clip into its annotation entries."""

    def __init__(self, cfg: AnnotationsConfig, base: str | Path) -> None:
        from foundation.audio_features import load_wav2vec2
        from foundation.identity import IdentityEncoder

        folders = check_model_dirs(cfg, base)
        self.cfg = cfg
        self.wav2vec2, self.extractor = load_wav2vec2(folders["annotations.wav2vec2_dir"])
        # the record preflight pinned (the same in every worker), else this folder's own
        self.encoder: Record = cfg.encoder or encoder_record(folders["annotations.wav2vec2_dir"],
                                                             model_dirs(cfg, base)["annotations.wav2vec2_dir"])
        self.identity = IdentityEncoder(folders["annotations.insightface_dir"])
        log.info("annotation models loaded: audio encoder %s, insightface %s", *folders.values())

    def audio_features(self, vocals: np.ndarray, fps: int, frames: int) -> np.ndarray:
        """(frames, layers, dim) float16: one row per video frame."""
        from foundation.audio_features import wav2vec2_features

        features = wav2vec2_features(vocals, self.wav2vec2, self.extractor, fps).numpy()
        if len(features) != frames:
            raise ValueError(f"wav2vec2 gave {len(features)} feature frames for a {frames}-frame clip")
        return features.astype(np.float16)

    def face_embedding(self, crops: Sequence[np.ndarray]) -> tuple[np.ndarray, bool]:
        """Embedding of the first of a few evenly spread frames where a face is detected (zero if none)."""
        embedding, found = None, False
        for index in np.unique(np.linspace(0, len(crops) - 1, IDENTITY_TRIES).round().astype(int)):
            embedding, found = self.identity.embed(crops[index])
            if found:
                break
        return embedding, found

    def annotate(self, crops: Sequence[np.ndarray], landmarks: np.ndarray, vocals: np.ndarray,
                 fps: int) -> tuple[dict[str, bytes], bool]:
        """Sample entries for one clip and whether the identity embedding is of a detected face.

        crops: the (size, size, 3) RGB frames as stored; landmarks: (frames, 478, 2) in crop pixels;
        vocals: the stored clip's speech (after any vocal separation), frames * rate / fps samples.
        """
        from foundation.masks import region_masks

        size = crops[0].shape[0]
        soft = self.cfg.soft_mask_size
        masks = region_masks(landmarks, (size, size), (soft, soft))
        embedding, found = self.face_embedding(crops)
        return {
            schema.KEY_AUDIO_FEATURES: schema.encode_npy(self.audio_features(vocals, fps, len(landmarks))),
            schema.KEY_FACE_EMB: schema.encode_npy(embedding.astype(np.float32)),
            schema.KEY_FACE_MASK: schema.encode_png((masks.face_region * 255).astype(np.uint8)),
            schema.KEY_REGION_MASKS: schema.encode_npy(masks.regions.astype(np.float16)),
        }, found
