"""The reference approach: Hallo's data preparation step 1 (`scripts/data_preprocess.py --step 1`).

For one video: ffmpeg writes every frame as a PNG at 25 fps and the original resolution
(`-vf fps=25 %04d.png`); the 478-point face mesh runs on every PNG read back from disk; ffmpeg
extracts the audio (`-vn -acodec pcm_s16le -ar 16000 -ac 2`). Hallo runs MediaPipe's FaceLandmarker
task in IMAGE mode, whose model file cannot be downloaded here; the legacy face mesh in static-image
mode is the same pair of networks (a face detector on every image, then the refined landmark model).
Hallo's per-video mask union (bounding boxes of a few landmark ids) is a few array operations and
is left out, as is everything it does on the GPU in step 2. ffmpeg is imageio-ffmpeg's static build,
called with an argument list.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import mediapipe as mp

from benchmarks.common import StageClock

STAGES = ("ffmpeg: frames to PNG", "PNG read", "face mesh per PNG", "ffmpeg: audio to wav")


def _ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def run(video: Path, work: Path, clock: StageClock) -> dict[str, int]:
    """Step 1 on `video` with its files under `work`; returns frames written and frames with a face."""
    frames_dir = work / "images"
    frames_dir.mkdir(parents=True, exist_ok=True)
    with clock.stage(STAGES[0]):
        _ffmpeg("-i", str(video), "-vf", "fps=25", str(frames_dir / "%04d.png"))
    found = 0
    pngs = sorted(frames_dir.glob("*.png"))
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True) as mesh:
        for png in pngs:
            with clock.stage(STAGES[1]):
                rgb = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB)
            with clock.stage(STAGES[2]):
                found += bool(mesh.process(rgb).multi_face_landmarks)
    with clock.stage(STAGES[3]):
        _ffmpeg("-i", str(video), "-vn", "-acodec", "pcm_s16le", "-ar", "16000", "-ac", "2", str(work / "audio.wav"))
    return {"frames": len(pngs), "frames_with_face": found}
