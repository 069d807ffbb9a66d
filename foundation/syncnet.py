"""SyncNet lip-sync scoring exactly as syncnet_python computes it, shared by curation (the lip-sync
filter) and the model (LSE-C / LSE-D of generated video).

The network of Chung & Zisserman (2016) carries syncnet_python's module names (`SyncNetModel.S`),
so its released weights (`syncnet_v2.model`, a plain state dict) load as they are. The scoring
path follows syncnet_python step by step (tests/test_syncnet_parity.py runs its own code against
this one):
- face track -> 224x224 BGR crops: box half-size and centre median-filtered over 13 frames, a
  square of 2.8 x the half-size from the box top down, centred across, grey (110) outside the frame;
- audio (16 kHz) -> MFCC (python_speech_features defaults on 16-bit-scaled samples, 100 steps a
  second, 4 per 25 fps frame); window i is video frames i..i+4 against MFCC steps 4i..4i+19,
  for i < frames - 5;
- per offset k in [-N, N], the mean over windows of the L2 distance between lip window i and
  audio window i + k (zero-padded), giving a curve of 2N+1 distances;
- offset = the k at the minimum, min_dist = the minimum, confidence = median(curve) - min_dist.

Sign convention: a positive offset means the audio lags the video. syncnet_python prints
`vshift - argmin`, the same number with the opposite sign.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np
import torch
from scipy.signal import medfilt
from torch import nn

log = logging.getLogger(__name__)

FPS = 25
SAMPLE_RATE = 16000
WINDOW = 5  # video frames per SyncNet window (0.2 s)
MFCC_PER_FRAME = 4
MFCC_WINDOW = MFCC_PER_FRAME * WINDOW  # 20 MFCC steps under one window
CROP_SIZE = 224
CROP_MARGIN = 0.4  # syncnet_python's crop_scale: the box half-size is widened by this share
BOX_SMOOTH = 13  # median filter over the face box track, as syncnet_python's tracker
PAD_GREY = 110  # what syncnet_python fills outside the frame with
MAX_OFFSET = 15  # syncnet_python's vshift: offsets searched each way, in frames
BATCH = 64  # windows per network call; batches span clips
WEIGHTS_FILE = Path("syncnet") / "syncnet_v2.model"  # inside a base folder from `hallo-weights fetch`

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


@dataclass(frozen=True)
class SyncResult:
    offset: int  # frames the audio lags the video (negative: it leads)
    min_dist: float  # LSE-D
    confidence: float  # LSE-C
    curve: np.ndarray  # distance per offset -N..N


def summarize_curve(curve: np.ndarray) -> SyncResult:
    """Offset, min distance and confidence of a distance curve over offsets -N..N (syncnet_python's maths)."""
    curve = np.asarray(curve, np.float64)
    if curve.ndim != 1 or len(curve) % 2 == 0:
        raise ValueError(f"a distance curve has 2N+1 values, got shape {curve.shape}")
    best = int(np.argmin(curve))
    min_dist = float(curve[best])
    return SyncResult(best - (len(curve) - 1) // 2, min_dist, float(np.median(curve)) - min_dist, curve)


def feature_distance_curve(video: np.ndarray, audio: np.ndarray, max_offset: int) -> np.ndarray:
    """syncnet_python's curve from per-window embeddings (windows, dim): for each offset k, the mean
    over video windows i of the L2 distance to audio window i + k, the audio zero-padded at both ends."""
    n = len(video)
    padded = np.concatenate([np.zeros((max_offset, audio.shape[1])), audio[:n], np.zeros((max_offset, audio.shape[1]))])
    windows = np.stack([padded[i:i + 2 * max_offset + 1] for i in range(n)])  # (n, 2N+1, dim)
    # torch.pairwise_distance adds eps=1e-6 to the difference; kept so the numbers match
    dist = np.linalg.norm(video[:, None, :] - windows + 1e-6, axis=2)
    return dist.mean(axis=0)


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
        raise FileNotFoundError(f"no SyncNet weights file at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ValueError(f"{path} is not a syncnet_python SyncNet state dict: {err}") from err
    model = SyncNet()
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise ValueError(f"{path} is not a syncnet_python SyncNet state dict: "
                         f"{str(err).splitlines()[0]}") from err
    return model.eval()


def weights_in(base: str | Path) -> Path:
    """Where `hallo-weights fetch --to BASE` puts the SyncNet weights."""
    return Path(base) / WEIGHTS_FILE


def mfcc_windows(audio: np.ndarray, sample_rate: int, windows: int) -> np.ndarray:
    """(windows, 1, 13, 20): the MFCC steps under video frames i .. i+4 for each window i."""
    import python_speech_features

    mfcc = python_speech_features.mfcc(audio.astype(np.float64) * 32768, sample_rate).T  # (13, steps)
    need = MFCC_PER_FRAME * (windows - 1) + MFCC_WINDOW
    if mfcc.shape[1] < need:
        mfcc = np.pad(mfcc, ((0, 0), (0, need - mfcc.shape[1])))
    return np.stack([mfcc[:, MFCC_PER_FRAME * i:MFCC_PER_FRAME * i + MFCC_WINDOW] for i in range(windows)])[:, None]


def landmark_boxes(landmarks: np.ndarray) -> np.ndarray:
    """(frames, 4) x0, y0, x1, y1 face boxes: the extent of each frame's face-mesh points (pixels).
    They stand in for the S3FD detections syncnet_python tracks."""
    return np.concatenate([landmarks.min(axis=1), landmarks.max(axis=1)], axis=1)


def face_track_crops(frames: Sequence[np.ndarray], boxes: np.ndarray) -> np.ndarray:
    """(frames, 224, 224, 3) BGR crops of RGB frames along a face track of x0, y0, x1, y1 boxes,
    framed and smoothed the way syncnet_python crops its tracks."""
    half = np.max(boxes[:, 2:] - boxes[:, :2], axis=1) / 2
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    # syncnet_python's tracks have 50+ frames; a shorter one gets the longest odd window it holds,
    # so the zero padding of medfilt does not swamp it
    kernel = min(BOX_SMOOTH, len(boxes) - 1 + len(boxes) % 2)
    half, cx, cy = (medfilt(np.asarray(v, np.float64), kernel) for v in (half, cx, cy))
    out = np.empty((len(frames), CROP_SIZE, CROP_SIZE, 3), np.uint8)
    for i, frame in enumerate(frames):
        pad = int(half[i] * (1 + 2 * CROP_MARGIN))
        padded = cv2.copyMakeBorder(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), pad, pad, pad, pad,
                                    cv2.BORDER_CONSTANT, value=(PAD_GREY,) * 3)
        my, mx = cy[i] + pad, cx[i] + pad
        y0, y1 = int(my - half[i]), int(my + half[i] * (1 + 2 * CROP_MARGIN))
        x0, x1 = int(mx - half[i] * (1 + CROP_MARGIN)), int(mx + half[i] * (1 + CROP_MARGIN))
        out[i] = cv2.resize(padded[y0:y1, x0:x1], (CROP_SIZE, CROP_SIZE))
    return out


@dataclass
class FaceTrack:
    """What SyncNet scores: a face track's crops and the audio under it."""

    faces: np.ndarray  # (frames, 224, 224, 3) uint8 BGR, from face_track_crops
    audio: np.ndarray  # float32 mono at 16 kHz, frames * 640 samples

    @property
    def windows(self) -> int:
        return len(self.faces) - WINDOW  # as syncnet_python: the last window starts 5 frames before the end


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class SyncNetScorer:
    """SyncNet with its weights on one device; scores many face tracks in shared batches."""

    def __init__(self, weights: str | Path, device: Optional[str] = None, batch: int = BATCH) -> None:
        self.device = device or default_device()
        self.model = load_syncnet(weights).to(self.device)
        self.batch = batch
        log.info("SyncNet weights %s loaded on %s", weights, self.device)

    @torch.no_grad()
    def embed(self, tracks: Sequence[FaceTrack]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per track, (lip, audio) embeddings of its windows; network batches run across tracks."""
        for number, track in enumerate(tracks):
            if track.windows < 1:
                raise ValueError(f"SyncNet needs more than {WINDOW} frames, track {number} has {len(track.faces)}")
        videos = [torch.from_numpy(t.faces).permute(3, 0, 1, 2) for t in tracks]  # (3, frames, H, W) uint8
        mfccs = [torch.from_numpy(mfcc_windows(t.audio, SAMPLE_RATE, t.windows)).float() for t in tracks]
        index = [(t, i) for t, track in enumerate(tracks) for i in range(track.windows)]
        lip, aud = [], []
        for start in range(0, len(index), self.batch):
            chunk = index[start:start + self.batch]
            frames = torch.stack([videos[t][:, i:i + WINDOW] for t, i in chunk]).to(self.device, torch.float32)
            lip.append(self.model.forward_lip(frames).cpu())
            mfcc = torch.stack([mfccs[t][i] for t, i in chunk]).to(self.device)
            aud.append(self.model.forward_aud(mfcc).cpu())
        bounds = np.cumsum([0] + [t.windows for t in tracks])
        lip_all, aud_all = torch.cat(lip).numpy(), torch.cat(aud).numpy()
        return [(lip_all[a:b], aud_all[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]

    def score(self, tracks: Sequence[FaceTrack], max_offset: int = MAX_OFFSET) -> list[SyncResult]:
        return [summarize_curve(feature_distance_curve(lip, aud, max_offset)) for lip, aud in self.embed(tracks)]
