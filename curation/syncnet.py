"""SyncNet backend: the network of Chung & Zisserman (2016) with its module names as in
syncnet_python's `SyncNetModel.S`, so that its released weights (`syncnet_v2.model`, a plain state
dict) load as they are. No weights ship with this project: `sync.weights` names a local file.

Inputs follow syncnet_python: 5-frame windows of 224x224 BGR face crops (0-255, not normalised)
against 13 x 20 MFCC windows (python_speech_features defaults on 16-bit-scaled 16 kHz audio,
100 steps per second, so 4 MFCC steps per 25 fps video frame).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from scipy.signal import medfilt
from torch import nn

from foundation.faces import crop_frame
from curation.sync import ClipSignals, SyncResult, feature_distance_curve, summarize_curve

log = logging.getLogger(__name__)

WINDOW = 5  # video frames per SyncNet window (0.2 s)
MFCC_PER_FRAME = 4
MFCC_WINDOW = MFCC_PER_FRAME * WINDOW  # 20 MFCC steps under one window
CROP_SIZE = 224
CROP_MARGIN = 0.4  # syncnet_python's crop_scale: the box half-size is widened by this share
BOX_SMOOTH = 13  # median filter over the face box track, as syncnet_python's tracker
BATCH = 20

# (kind, out_channels, kernel, stride, padding); every conv is followed by batch norm and ReLU
_AUDIO_LAYERS = [
    ("conv", 64, (3, 3), (1, 1), (1, 1)), ("pool", 0, (1, 1), (1, 1), 0),
    ("conv", 192, (3, 3), (1, 1), (1, 1)), ("pool", 0, (3, 3), (1, 2), 0),
    ("conv", 384, (3, 3), 1, (1, 1)),
    ("conv", 256, (3, 3), 1, (1, 1)),
    ("conv", 256, (3, 3), 1, (1, 1)), ("pool", 0, (3, 3), (2, 2), 0),
    ("conv", 512, (5, 4), 1, (0, 0)),
]
_LIP_LAYERS = [
    ("conv", 96, (5, 7, 7), (1, 2, 2), 0), ("pool", 0, (1, 3, 3), (1, 2, 2), 0),
    ("conv", 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), ("pool", 0, (1, 3, 3), (1, 2, 2), (0, 1, 1)),
    ("conv", 256, (1, 3, 3), 1, (0, 1, 1)),
    ("conv", 256, (1, 3, 3), 1, (0, 1, 1)),
    ("conv", 256, (1, 3, 3), 1, (0, 1, 1)), ("pool", 0, (1, 3, 3), (1, 2, 2), 0),
    ("conv", 512, (1, 6, 6), 1, 0),
]


def _cnn(layers: list, in_channels: int, dims: int) -> nn.Sequential:
    conv, norm, pool = (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d) if dims == 2 else (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d)
    modules: list[nn.Module] = []
    channels = in_channels
    for kind, out, kernel, stride, padding in layers:
        if kind == "pool":
            modules.append(pool(kernel_size=kernel, stride=stride, padding=padding))
        else:
            modules += [conv(channels, out, kernel_size=kernel, stride=stride, padding=padding), norm(out), nn.ReLU()]
            channels = out
    return nn.Sequential(*modules)


def _head(embedding: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embedding))


class SyncNet(nn.Module):
    """Audio stream (1 x 13 x 20 MFCC) and lip stream (3 x 5 x 224 x 224) into one embedding space."""

    def __init__(self, embedding: int = 1024) -> None:
        super().__init__()
        self.netcnnaud = _cnn(_AUDIO_LAYERS, 1, dims=2)
        self.netfcaud = _head(embedding)
        self.netcnnlip = _cnn(_LIP_LAYERS, 3, dims=3)
        self.netfclip = _head(embedding)

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_lip(self, frames: torch.Tensor) -> torch.Tensor:
        return self.netfclip(self.netcnnlip(frames).flatten(1))


def load_syncnet(path: str | Path) -> SyncNet:
    """A SyncNet in eval mode with the weights of a syncnet_python-format state dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sync.weights: no SyncNet weights file at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = SyncNet()
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"sync.weights: {path} is not a syncnet_python SyncNet state dict: "
                         f"{str(err).splitlines()[0]}") from err
    return model.eval()


def mfcc_windows(audio: np.ndarray, sample_rate: int, windows: int) -> np.ndarray:
    """(windows, 1, 13, 20): the MFCC steps under video frames i .. i+4 for each window i."""
    import python_speech_features

    mfcc = python_speech_features.mfcc(audio.astype(np.float64) * 32768, sample_rate).T  # (13, steps)
    need = MFCC_PER_FRAME * (windows - 1) + MFCC_WINDOW
    if mfcc.shape[1] < need:
        mfcc = np.pad(mfcc, ((0, 0), (0, need - mfcc.shape[1])))
    return np.stack([mfcc[:, MFCC_PER_FRAME * i:MFCC_PER_FRAME * i + MFCC_WINDOW] for i in range(windows)])[:, None]


def face_crops(crops: Sequence[np.ndarray], landmarks: np.ndarray) -> np.ndarray:
    """(frames, 224, 224, 3) BGR face crops framed the way syncnet_python frames its face track:
    a square of side 2.8 x the box half-size, from the box top down, centred across."""
    lo, hi = landmarks.min(axis=1), landmarks.max(axis=1)
    half = np.max(hi - lo, axis=1) / 2
    cx, cy = (lo[:, 0] + hi[:, 0]) / 2, (lo[:, 1] + hi[:, 1]) / 2
    if len(half) >= BOX_SMOOTH:
        half, cx, cy = (medfilt(v, BOX_SMOOTH) for v in (half, cx, cy))
    side = 2 * half * (1 + CROP_MARGIN)
    boxes = np.stack([cx - half * (1 + CROP_MARGIN), cy - half, side], axis=1)
    return np.stack([cv2.cvtColor(crop_frame(frame, box, CROP_SIZE), cv2.COLOR_RGB2BGR)
                     for frame, box in zip(crops, boxes)])


class SyncNetScorer:
    name = "syncnet"
    default_min_confidence = 3.0  # LatentSync's filter

    def __init__(self, weights: str | Path) -> None:
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = load_syncnet(weights).to(self.device)
        log.info("SyncNet weights %s loaded on %s", weights, self.device)

    @torch.no_grad()
    def embed(self, faces: np.ndarray, mfcc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-window lip and audio embeddings from BGR crops (frames, 224, 224, 3) and MFCC windows."""
        video = torch.from_numpy(faces.astype(np.float32)).permute(3, 0, 1, 2)  # (3, frames, H, W)
        lip, aud = [], []
        for i in range(0, len(mfcc), BATCH):
            idx = range(i, min(i + BATCH, len(mfcc)))
            lip.append(self.model.forward_lip(torch.stack([video[:, j:j + WINDOW] for j in idx]).to(self.device)).cpu())
            aud.append(self.model.forward_aud(torch.from_numpy(mfcc[i:i + BATCH]).float().to(self.device)).cpu())
        return torch.cat(lip).numpy(), torch.cat(aud).numpy()

    def score(self, clip: ClipSignals, max_offset: int) -> SyncResult:
        windows = clip.num_frames - WINDOW  # as syncnet_python: the last window starts 5 frames before the end
        if windows < 1:
            raise ValueError(f"SyncNet needs more than {WINDOW} frames, the clip has {clip.num_frames}")
        lip, aud = self.embed(face_crops(clip.crops(), clip.landmarks),
                              mfcc_windows(clip.audio, clip.sample_rate, windows))
        return summarize_curve(feature_distance_curve(lip, aud, max_offset))
