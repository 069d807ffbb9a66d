"""Cheap checks before the expensive analysis: where in a source a clip can still come from.

Wild lists are mostly rejects, so a reject should cost little. Two checks decide what they can
before the full-rate face analysis:
- speech, from the audio alone (silero-vad on the whole source mixture, before any video decode):
  a clip needs at least `speech.min_ratio` voiced audio over at least `clips.min_s`, so only frames
  near a `clips.min_s` window with `screen.min_speech_ratio` of voiced audio can end in a kept clip.
  The window ratio is set below speech.min_ratio on purpose: the clip's check runs on the separated
  vocals, which may hold speech the mixture's music hides. A frame further than clips.max_s -
  clips.min_s from every such window is outside every clip that could pass, so it is not analysed;
- faces, from a sparse probe (face detection on one analysis frame every
  `screen.face_probe_every_s`, over the stretches the speech check keeps; the frames between are
  decoded, never converted): a source in which none shows a face is `no_face`. The probe stops at
  its first face, so on a source with faces it costs about one frame.
"""
from __future__ import annotations

import numpy as np

from curation.config import CurationConfig
from curation.media import MediaInfo, iter_frames
from curation.speech import speech_segments
from foundation.faces import FaceAnalyzer


def voiced_frames(audio: np.ndarray, num_frames: int, fps: int, sample_rate: int, cfg: CurationConfig) -> np.ndarray:
    """Per video frame, whether silero-vad hears speech in most of it."""
    voiced = np.zeros(audio.size, bool)
    for start, end in speech_segments(audio, sample_rate, cfg.speech):
        voiced[start:end] = True
    hop = sample_rate // fps
    per_frame = np.zeros(num_frames, np.float32)
    usable = min(num_frames, voiced.size // hop)
    per_frame[:usable] = voiced[:usable * hop].reshape(usable, hop).mean(axis=1)
    return per_frame >= 0.5


def window_shares(voiced: np.ndarray, window: int) -> np.ndarray:
    """Voiced share of every `window`-frame window [i, i + window) (one value, the whole, if shorter)."""
    if voiced.size <= window:
        return np.array([voiced.mean() if voiced.size else 0.0])
    sums = np.concatenate([[0], np.cumsum(voiced, dtype=np.int64)])
    return (sums[window:] - sums[:-window]) / window


def speech_stretches(voiced: np.ndarray, fps: int, cfg: CurationConfig) -> list[tuple[int, int]]:
    """[a, b) frame ranges that may still yield a clip with speech, in order (empty: none can)."""
    n = voiced.size
    window = max(1, int(round(cfg.clips.min_s * fps)))
    if n <= window:  # shorter than a clip: the clip steps say what it is (too short)
        return [(0, n)] if n else []
    good = np.flatnonzero(window_shares(voiced, window) >= cfg.screen.min_speech_ratio)
    reach = int(round((cfg.clips.max_s - cfg.clips.min_s) * fps))
    keep = np.zeros(n + 1, np.int64)
    np.add.at(keep, np.maximum(good - reach, 0), 1)
    np.add.at(keep, np.minimum(good + window + reach, n), -1)
    inside = np.concatenate([[False], np.cumsum(keep[:n]) > 0, [False]])
    edges = np.flatnonzero(np.diff(inside.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def probe_faces(info: MediaInfo, stretches: list[tuple[int, int]], cfg: CurationConfig) -> tuple[bool, int]:
    """(a face was found, frames looked at): face detection on one analysis frame every
    screen.face_probe_every_s, stopping at the first face. The full analysis finds a face only where
    its detector does, so a source the detector never finds one in cannot yield a clip."""
    step = max(1, int(round(cfg.screen.face_probe_every_s * info.fps)))
    looked = 0
    with FaceAnalyzer(cfg.faces) as analyzer:
        for start, end in stretches:
            for _, frame in iter_frames(info, start, end, short_side=cfg.media.analysis_short_side, step=step):
                looked += 1
                if len(analyzer.detect(frame)):
                    return True, looked
    return False, looked
