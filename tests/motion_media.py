"""Real fixture talking clips made still, frozen or cut into slideshows, and one whose mouth stays shut.

Every picture comes from examples.fixtures' real photos and every track is the real speech; nothing
here animates a mouth by the motion rules under test.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import av
import numpy as np

from examples import fixtures
from examples.articulation import REST_APERTURE, MouthTrack


def decoded_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def _write(path: Path, frames: list[np.ndarray], audio: Optional[np.ndarray] = None) -> Path:
    size = (frames[0].shape[1], frames[0].shape[0])
    fixtures.write_mp4(path, frames, size, fixtures.speech_track(len(frames) / fixtures.FPS) if audio is None else audio)
    return path


def with_audio(talking: Path, out: Path, audio: np.ndarray) -> Path:
    """The talking clip's picture with another track."""
    return _write(out, decoded_frames(talking), audio)


def still(talking: Path, out: Path) -> Path:
    """The first frame of a talking clip held for its whole length, with the speech."""
    frames = decoded_frames(talking)
    return _write(out, [frames[0]] * len(frames))


def slideshow(talking: Path, out: Path, stills: int = 3) -> Path:
    """`stills` frames of a talking clip (the same speaker, different moments), each held for an
    equal part of its length, with the speech."""
    frames = decoded_frames(talking)
    bounds = np.linspace(0, len(frames), stills + 1).round().astype(int)
    return _write(out, [frames[a] for a, b in zip(bounds, bounds[1:]) for _ in range(b - a)])


def frozen(talking: Path, out: Path, start: int, frames_held: int) -> Path:
    """The talking clip with frame `start` held over the next `frames_held` frames; the speech goes on."""
    frames = decoded_frames(talking)
    frames[start:start + frames_held] = [frames[start]] * frames_held
    return _write(out, frames)


def shut_mouth(out: Path, duration_s: float, size: tuple[int, int] = (640, 480)) -> Path:
    """The in_sync fixture's photo, head sway and sensor noise, its mouth at rest throughout, with the speech."""
    frames = round(duration_s * fixtures.FPS)
    rest = MouthTrack(np.full(frames, REST_APERTURE), np.zeros(frames))
    return _write(out, list(fixtures.render_frames(fixtures.VARIANTS["in_sync"], rest, size, seed=0)))
