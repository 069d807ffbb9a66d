"""Lip-sync metrics of a talking-head video: the papers' LSE-C and LSE-D.

    python -m model.evaluate --video out.mp4 [--json] [--base BASE | --weights syncnet_v2.model] [--device cpu]

LSE-C is syncnet_python's confidence and LSE-D its minimum distance, over the whole video as one
face track (offsets searched +-15 frames): the numbers Wav2Lip, Hallo and most talking-head papers
report. Higher LSE-C and lower LSE-D mean better sync. The scoring path is foundation.syncnet,
proven equal to syncnet_python's own code; the face track comes from the face mesh (the extent of
its points per frame) rather than syncnet_python's S3FD detector. Where no frame shows a face (a
barely trained model), the box where this project's crops put the face is used instead, and the
output says so.

Needs SyncNet's weights: BASE/syncnet/syncnet_v2.model from `hallo-weights fetch`.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

from foundation.media_io import read_audio, read_video

if TYPE_CHECKING:  # the face mesh and SyncNet (torch) load after the arguments are parsed: `--help` is quick
    from foundation.faces import FacesConfig
    from foundation.syncnet import SyncNetScorer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncMetrics:
    lse_c: float  # SyncNet confidence: median(curve) - min(curve)
    lse_d: float  # SyncNet minimum distance
    offset: int  # frames the audio lags the video at the minimum (negative: it leads)
    frames: int
    face_frames: int  # frames where the face mesh found the face (the others are interpolated)
    face_track: str  # "face_mesh", or "crop_framing" when no frame showed a face


def face_boxes(frames: np.ndarray, faces: Optional[FacesConfig] = None) -> tuple[np.ndarray, int]:
    """Per-frame x0, y0, x1, y1 face boxes (pixels) from the face mesh, frames without a face
    interpolated from their neighbours, and how many frames had one. None found: the box where the
    curation crops put the face (crop_scale x face size, centre crop_shift_down x face below it)."""
    from foundation.faces import FaceAnalyzer, FacesConfig
    from foundation.syncnet import landmark_boxes

    cfg = faces or FacesConfig()
    height, width = frames.shape[1:3]
    found: dict[int, np.ndarray] = {}
    with FaceAnalyzer(cfg) as analyzer:
        for index, frame in enumerate(frames):
            landmarks = analyzer.analyze(frame).landmarks
            if landmarks is not None:
                found[index] = landmark_boxes(landmarks[None, :, :2] * np.array([width, height]))[0]
    if not found:
        face = min(width, height) / cfg.crop_scale
        cx, cy = width / 2, height / 2 - cfg.crop_shift_down * face
        return np.tile([cx - face / 2, cy - face / 2, cx + face / 2, cy + face / 2], (len(frames), 1)), 0
    known = np.array(sorted(found))
    boxes = np.stack([found[i] for i in known])
    everywhere = np.arange(len(frames))
    return np.stack([np.interp(everywhere, known, boxes[:, j]) for j in range(4)], axis=1), len(known)


def sync_metrics(frames: np.ndarray, audio: np.ndarray, scorer: SyncNetScorer) -> SyncMetrics:
    """LSE-C / LSE-D of 25 fps RGB frames (T, H, W, 3) with 16 kHz mono audio under them."""
    from foundation.syncnet import FPS, MAX_OFFSET, SAMPLE_RATE, FaceTrack, face_track_crops

    hop = SAMPLE_RATE // FPS
    audio = np.pad(audio, (0, max(0, len(frames) * hop - len(audio))))[:len(frames) * hop]
    boxes, detected = face_boxes(frames)
    if not detected:
        log.warning("no face found in any frame: scoring the region where the crops put the face")
    (result,) = scorer.score([FaceTrack(face_track_crops(frames, boxes), audio.astype(np.float32))], MAX_OFFSET)
    return SyncMetrics(result.confidence, result.min_dist, result.offset, len(frames), detected,
                       "face_mesh" if detected else "crop_framing")


def evaluate_video(path: str | Path, scorer: SyncNetScorer) -> SyncMetrics:
    """LSE-C / LSE-D of a video file with its own audio track (any frame rate; resampled to 25 fps)."""
    from foundation.syncnet import FPS, SAMPLE_RATE

    frames = read_video(path, FPS)
    audio, _ = read_audio(path, SAMPLE_RATE)
    return sync_metrics(frames, audio[0], scorer)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.evaluate", description=__doc__.split("\n")[0],
                                     epilog="LSE-C: higher is better; LSE-D: lower is better (syncnet_python's "
                                            "conf and min dist over the whole video).")
    parser.add_argument("--video", type=Path, required=True, help="mp4 (or any video PyAV reads) with its audio track")
    parser.add_argument("--base", type=Path, default=Path("pretrained"),
                        help="base folder from `hallo-weights fetch` (default: ./pretrained)")
    parser.add_argument("--weights", type=Path, help="SyncNet weights file; default BASE/syncnet/syncnet_v2.model")
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from foundation.syncnet import SyncNetScorer, weights_in

    weights = args.weights or weights_in(args.base)
    if not weights.is_file():
        print(f"error: no SyncNet weights at {weights}; fetch them with `hallo-weights fetch --to BASE`",
              file=sys.stderr)
        return 2
    if not args.video.is_file():
        print(f"error: no video at {args.video}", file=sys.stderr)
        return 2
    try:
        metrics = evaluate_video(args.video, SyncNetScorer(weights, args.device))
    except ValueError as err:
        print(f"error: {args.video}: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"video": str(args.video), "weights": str(weights), **asdict(metrics)}))
    else:
        print(f"LSE-C (confidence)    {metrics.lse_c:.3f}\nLSE-D (min distance)  {metrics.lse_d:.3f}\n"
              f"offset                {metrics.offset:+d} frames (positive: the audio lags the video)\n"
              f"frames                {metrics.frames} ({metrics.face_frames} with a face found; track: "
              f"{metrics.face_track})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
