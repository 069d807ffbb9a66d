"""Probe and normalise media with PyAV: constant-rate frames and mono 16 kHz audio.

Frames are resampled to a constant rate by picking, for every output tick k/fps, the source frame
whose timestamp is nearest (what ffmpeg's fps filter does), so variable-rate web video yields a
frame count that matches the audio duration exactly.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from curation import reasons
from curation.config import MediaConfig
from curation.reasons import Rejected

log = logging.getLogger(__name__)


@dataclass
class MediaInfo:
    path: Path
    duration_s: float
    width: int
    height: int
    source_fps: float
    num_frames: int  # at the normalised rate
    fps: int
    video_start_s: float  # the video stream's first timestamp; frame 0 and audio sample 0 sit here


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise Rejected(reasons.CORRUPT_MEDIA, f"cannot open: {err}".splitlines()[0]) from err


def _stream_duration(container: av.container.InputContainer, stream: av.stream.Stream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def probe(path: Path, cfg: MediaConfig) -> MediaInfo:
    """Check the container; raise `Rejected` for no video / no audio / undecodable / too short."""
    with _open(path) as container:
        if not container.streams.video:
            raise Rejected(reasons.NO_VIDEO, f"{len(container.streams.audio)} audio stream(s), no video")
        if not container.streams.audio:
            raise Rejected(reasons.NO_AUDIO, "the file has no audio stream")
        video = container.streams.video[0]
        duration = _stream_duration(container, video)
        source_fps = float(video.average_rate or video.guessed_rate or 0)
        width, height = video.codec_context.width, video.codec_context.height
        start = float(video.start_time * video.time_base) if video.start_time is not None else 0.0
    if width <= 0 or height <= 0:
        raise Rejected(reasons.CORRUPT_MEDIA, "video stream has no frame size")
    if duration < cfg.min_duration_s:
        raise Rejected(reasons.TOO_SHORT, f"{duration:.2f} s < media.min_duration_s={cfg.min_duration_s}")
    return MediaInfo(path, duration, width, height, source_fps, int(round(duration * cfg.fps)), cfg.fps, start)


def scaled_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """Frame size with the short side at most `short_side`, even dimensions (for yuv420)."""
    if not short_side or min(width, height) <= short_side:
        return width, height
    scale = short_side / min(width, height)
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def iter_frames(
    info: MediaInfo,
    start_frame: int = 0,
    end_frame: int | None = None,
    short_side: int | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (index, RGB uint8 frame) at the constant rate `info.fps`, for [start_frame, end_frame)."""
    end_frame = info.num_frames if end_frame is None else min(end_frame, info.num_frames)
    width, height = scaled_size(info.width, info.height, short_side)
    # Shrinking: swscale's area filter, made for it and about a quarter cheaper than its default.
    interpolation = "AREA" if (width, height) != (info.width, info.height) else None
    with _open(info.path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        origin = info.video_start_s
        if start_frame > 0:
            # Seek to the keyframe before the span; frames before it are decoded and skipped.
            container.seek(int((origin + start_frame / info.fps) / stream.time_base), stream=stream, backward=True)
        nxt = start_frame
        prev: tuple[float, av.VideoFrame] | None = None
        try:
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                t = frame.time - origin
                if prev is not None:
                    # Every tick closer to `prev` than to this frame gets `prev`.
                    midpoint = (prev[0] + t) / 2
                    while nxt < end_frame and nxt / info.fps < midpoint:
                        yield nxt, prev[1].to_ndarray(width=width, height=height, format="rgb24",
                                                      interpolation=interpolation)
                        nxt += 1
                if nxt >= end_frame:
                    return
                prev = (t, frame)
        except av.error.FFmpegError as err:
            raise Rejected(reasons.CORRUPT_MEDIA, f"decode error at frame {nxt}: {err}".splitlines()[0]) from err
        if prev is None:
            raise Rejected(reasons.CORRUPT_MEDIA, "no decodable video frame")
        last = prev[1].to_ndarray(width=width, height=height, format="rgb24", interpolation=interpolation)
        while nxt < end_frame:  # the last frame holds until the stream's end
            yield nxt, last
            nxt += 1


def load_audio(info: MediaInfo, sample_rate: int) -> np.ndarray:
    """The whole audio track as float32 mono at `sample_rate`, padded/trimmed to the video length."""
    chunks: list[np.ndarray] = []
    first_time: float | None = None
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    with _open(info.path) as container:
        if not container.streams.audio:
            raise Rejected(reasons.NO_AUDIO, "the file has no audio stream")
        try:
            for frame in container.decode(container.streams.audio[0]):
                if first_time is None and frame.time is not None:
                    first_time = frame.time
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as err:
            raise Rejected(reasons.CORRUPT_MEDIA, f"audio decode error: {err}".splitlines()[0]) from err
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if audio.size == 0:
        raise Rejected(reasons.NO_AUDIO, "the audio stream decodes to no samples")
    # Align sample 0 with video frame 0: pad if the audio starts late, trim if it starts early.
    lead = int(round(((first_time or 0.0) - info.video_start_s) * sample_rate))
    audio = np.pad(audio, (lead, 0)) if lead > 0 else audio[-lead:]
    target = int(math.ceil(info.num_frames / info.fps * sample_rate))
    if audio.size < target:
        audio = np.pad(audio, (0, target - audio.size))
    return audio[:target].astype(np.float32, copy=False)
