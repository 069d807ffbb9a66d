"""Identity embedding: insightface (antelopev2: SCRFD detector + glintr100 ArcFace) on a face image.

The embedding is the raw (not normalised) 512-d ArcFace feature of the largest detected face, as in
the reference. When no face is detected the embedding is the zero vector, again as the reference
does: zero is also the "no identity" value of classifier-free guidance and of training dropout
(ImageProj(0)), so a miss degrades to an unconditional identity instead of a wrong one.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

log = logging.getLogger(__name__)

EMBED_DIM = 512
DET_SIZE = 640


class IdentityEncoder:
    def __init__(self, model_dir: str | Path, providers: Sequence[str] = ("CPUExecutionProvider",)) -> None:
        """model_dir: a folder holding the detector and recogniser .onnx files."""
        from insightface.app import FaceAnalysis  # heavy import, only when identities are needed

        model_dir = Path(model_dir).resolve()
        if not model_dir.is_dir():
            raise FileNotFoundError(f"insightface model folder not found: {model_dir}")
        self.app = FaceAnalysis(name=str(model_dir), allowed_modules=["detection", "recognition"], providers=list(providers))
        if "recognition" not in self.app.models:
            raise FileNotFoundError(f"{model_dir} has no recognition (ArcFace) model")
        self.app.prepare(ctx_id=0 if "CUDAExecutionProvider" in providers else -1, det_size=(DET_SIZE, DET_SIZE))

    def embed(self, image_rgb: np.ndarray) -> tuple[np.ndarray, bool]:
        """(512,) float32 embedding of the largest face and whether a face was found."""
        faces = self.app.get(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
        if not faces:
            log.warning("no face detected for the identity embedding; using the zero (unconditional) embedding")
            return np.zeros(EMBED_DIM, np.float32), False
        largest = max(faces, key=lambda f: float((f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1])))
        return np.asarray(largest.embedding, np.float32), True
