"""Probe and normalise media with PyAV: constant-rate frames and mono 16 kHz audio.

Frames are resampled to a constant rate by picking, for every output tick k/fps, the source frame
whose timestamp is nearest (what ffmpeg's fps filter does), so variable-rate web video yields a
frame count that matches the audio duration exactly.

A packet the decoder refuses is skipped, as ffmpeg-based tools do: its audio becomes silence of
the packet's duration, a video packet leaves the previous frame in place. The skipped packets are
counted per stream (`MediaInfo.gaps`); `check_gaps` rejects the source as `corrupt_media` only
past `media.max_corrupt_share` of its duration, and `DecodeGaps.note` says what was filled.

Frames come out as a player shows them (foundation.media_io.Geometry: square pixels, upright), and
`MediaInfo.width`/`height` are that display size, so every box downstream is in display pixels.
Analysis frames are scaled to their short side in display geometry by swscale, then turned.
Black bars (letterbox, pillarbox), found in frames sampled across the source, are cut off: the
display size is the picture's, so boxes, `face_px` and crops never see the bars.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Optional, Union

import av
import numpy as np

from curation import reasons
from curation.config import MediaConfig
from curation.reasons import Rejected
from foundation.deinterlace import Deinterlacer
from foundation.media_io import Geometry, audio_stream, display_frame, stream_geometry, video_stream

log = logging.getLogger(__name__)


@dataclass
class DecodeGaps:
    """Packets the decoder refused, per stream kind: {packet pts: seconds}; re-decoding a span adds nothing."""

    skipped: dict[str, dict[int, float]] = field(default_factory=dict)

    def add(self, kind: str, pts: int | None, seconds: float) -> None:
        packets = self.skipped.setdefault(kind, {})
        packets[pts if pts is not None else -len(packets) - 1] = seconds

    def seconds(self, kind: str) -> float:
        return sum(self.skipped.get(kind, {}).values())

    def note(self) -> str:
        """One line for the manifest's detail column ('' when nothing was skipped)."""
        fills = {"audio": "zero-filled", "video": "previous frame held"}
        return "; ".join(f"{len(packets)} undecodable {kind} packet(s) skipped, {self.seconds(kind):.3f} s {fills[kind]}"
                         for kind, packets in sorted(self.skipped.items()))


@dataclass
class MediaInfo:
    path: Path
    duration_s: float
    width: int  # display size: square pixels, upright (what iter_frames yields at full resolution)
    height: int
    source_fps: float
    num_frames: int  # at the normalised rate
    fps: int
    video_start_s: float  # the video stream's first timestamp; frame 0 and audio sample 0 sit here
    geometry: Geometry  # the stored frames: size, sample aspect ratio, display rotation, picture inside bars
    gaps: DecodeGaps = field(default_factory=DecodeGaps)  # filled in as the streams are decoded

    def geometry_columns(self) -> dict[str, float | int]:
        """The source geometry for the manifest (the stored crops are upright with square pixels)."""
        return {"source_width": self.geometry.width, "source_height": self.geometry.height,
                "sample_aspect": self.geometry.sample_aspect, "rotation_deg": self.geometry.rotation_deg,
                "display_width": self.width, "display_height": self.height}


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise Rejected(reasons.CORRUPT_MEDIA, f"cannot open: {err}".splitlines()[0]) from err


def _video_end(container: av.container.InputContainer, stream: av.stream.Stream) -> Optional[float]:
    """Where the video packets that are really in the file end (pts + duration, latest), None without any.

    Headers lie or say nothing: a recording muxed to a pipe or by a browser has no duration, a
    file cut after its index (moov first) claims frames it lacks, and a container duration spans
    the longer audio. Demuxing without decoding costs a read of the file, far less than its decode.
    """
    end: Optional[float] = None
    try:
        for packet in container.demux(stream):
            if packet.pts is not None and packet.time_base is not None:
                stop = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                end = stop if end is None else max(end, stop)
    except av.error.FFmpegError as err:  # a damaged tail: what came before it is the stream
        log.debug("demuxing stopped at %s s: %s", end, err)
    return end


def _header_duration(container: av.container.InputContainer, stream: av.stream.Stream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _decoded(container: av.container.InputContainer, stream: av.stream.Stream, gaps: DecodeGaps,
             ) -> Iterator[Union[av.frame.Frame, tuple[Optional[float], float]]]:
    """The stream's frames in order; for a packet the decoder refuses, (its start time, its duration) instead.

    Interlaced video frames come out deinterlaced (one frame late). Container-level errors (demuxing) still
    raise: there is no packet boundary to resume from.
    """
    deinterlacer = Deinterlacer() if stream.type == "video" else None
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.FFmpegError as err:
            if packet.size == 0:  # the final flush: nothing to skip
                raise
            base = packet.time_base or stream.time_base
            seconds = float(packet.duration * base) if packet.duration and base else 0.0
            start = float(packet.pts * base) if packet.pts is not None and base else None
            gaps.add(stream.type, packet.pts, seconds)
            log.debug("skipping an undecodable %s packet at %s s: %s", stream.type, start, err)
            yield start, seconds
            continue
        for frame in frames:
            yield from deinterlacer.push(frame) if deinterlacer else (frame,)
    if deinterlacer:
        yield from deinterlacer.flush()


def check_gaps(info: MediaInfo, cfg: MediaConfig) -> None:
    """Rejected(corrupt_media) once a stream's skipped packets exceed media.max_corrupt_share of the source."""
    for kind in sorted(info.gaps.skipped):
        share = info.gaps.seconds(kind) / max(info.duration_s, 1e-9)
        if share > cfg.max_corrupt_share:
            raise Rejected(reasons.CORRUPT_MEDIA, f"{len(info.gaps.skipped[kind])} undecodable {kind} packet(s), "
                           f"{share:.1%} of the source > media.max_corrupt_share={cfg.max_corrupt_share}")


def probe(path: Path, cfg: MediaConfig) -> MediaInfo:
    """Check the container; raise `Rejected` for no video / no audio / undecodable / too short."""
    with _open(path) as container:
        video = video_stream(container)
        if video is None:
            pictures = len(container.streams.video)
            raise Rejected(reasons.NO_VIDEO, f"{len(container.streams.audio)} audio stream(s), no video"
                           + (f" ({pictures} attached picture(s): cover art)" if pictures else ""))
        if audio_stream(container) is None:
            raise Rejected(reasons.NO_AUDIO, "the file has no audio stream")
        source_fps = float(video.average_rate or video.guessed_rate or 0)
        start = float(video.start_time * video.time_base) if video.start_time is not None else 0.0
        geometry = stream_geometry(video, _first_frame(container, video))
        end = _video_end(container, video)  # the packets after the first frame's
        duration = end - start if end is not None and end > start else _header_duration(container, video)
        if geometry.width <= 0 or geometry.height <= 0:
            raise Rejected(reasons.CORRUPT_MEDIA, "video stream has no frame size")
        samples = _sampled_frames(container, video, geometry, start, duration, cfg.bar_samples)
        geometry = replace(geometry, picture=find_picture(samples, cfg.bar_luma_max, cfg.bar_min_share))
    if duration < cfg.min_duration_s:
        raise Rejected(reasons.TOO_SHORT, f"{duration:.2f} s < media.min_duration_s={cfg.min_duration_s}")
    width, height = geometry.display_size
    return MediaInfo(path, duration, width, height, source_fps, int(round(duration * cfg.fps)), cfg.fps, start,
                     geometry)


def _first_frame(container: av.container.InputContainer, stream: av.stream.Stream) -> Optional[av.VideoFrame]:
    """The first decodable frame (it carries the display matrix), None if there is none: iter_frames
    then rejects the source with the reason."""
    try:
        return next((f for f in _decoded(container, stream, DecodeGaps()) if not isinstance(f, tuple)), None)
    except av.error.FFmpegError:
        return None


def _sampled_frames(container: av.container.InputContainer, stream: av.stream.Stream, geometry: Geometry,
                    start: float, duration: float, count: int) -> list[np.ndarray]:
    """Full-size display frames (bars included) at `count` points spread over the source; a point
    that cannot be sought or decoded is left out."""
    frames = []
    for share in (np.arange(count) + 0.5) / max(count, 1):
        try:
            container.seek(int((start + share * duration) / stream.time_base), stream=stream, backward=True)
            frame = next((f for f in _decoded(container, stream, DecodeGaps()) if not isinstance(f, tuple)), None)
        except av.error.FFmpegError:
            continue
        if frame is not None:
            frames.append(display_frame(frame, geometry, geometry.full_size))
    return frames


def find_picture(frames: list[np.ndarray], luma_max: float, min_share: float) -> Optional[tuple[int, int, int, int]]:
    """(x, y, w, h) of the picture inside black bars (letterbox, pillarbox), None without bars.

    An edge row or column is a bar while its mean over the brightest of `frames` per pixel stays at
    or below `luma_max` (a dark scene or a black lead-in in one frame does not make bars); bars
    thinner than `min_share` of the side are kept, and a source dark everywhere keeps its frame.
    """
    if not frames:
        return None
    brightest = np.max([f.max(axis=2) for f in frames], axis=0).astype(np.float32)
    height, width = brightest.shape
    lit_rows, lit_cols = brightest.mean(axis=1) > luma_max, brightest.mean(axis=0) > luma_max
    if not lit_rows.any() or not lit_cols.any():
        return None

    def span(lit: np.ndarray) -> tuple[int, int]:
        first, stop = int(np.argmax(lit)), len(lit) - int(np.argmax(lit[::-1]))
        side = len(lit)
        return (0 if first < min_share * side else first), (side if side - stop < min_share * side else stop)

    (x0, x1), (y0, y1) = span(lit_cols), span(lit_rows)
    if (x0, y0, x1, y1) == (0, 0, width, height):
        return None
    return x0, y0, x1 - x0, y1 - y0


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
    step: int = 1,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (index, RGB uint8 display frame) at the constant rate `info.fps`, for [start_frame, end_frame);
    with `step` > 1 only every step-th of them (the others are decoded, never converted: cheap)."""
    end_frame = info.num_frames if end_frame is None else min(end_frame, info.num_frames)
    size = scaled_size(info.width, info.height, short_side)
    with _open(info.path) as container:
        stream = video_stream(container)
        stream.thread_type = "AUTO"
        origin = info.video_start_s
        if start_frame > 0:
            # Seek to the keyframe before the span; frames before it are decoded and skipped.
            container.seek(int((origin + start_frame / info.fps) / stream.time_base), stream=stream, backward=True)
        nxt = start_frame
        prev: tuple[float, av.VideoFrame] | None = None
        try:
            for frame in _decoded(container, stream, info.gaps):
                if isinstance(frame, tuple) or frame.time is None:
                    continue  # a skipped packet: `prev` stays the nearest frame
                t = frame.time - origin
                if prev is not None:
                    # Every tick closer to `prev` than to this frame gets `prev`.
                    midpoint = (prev[0] + t) / 2
                    while nxt < end_frame and nxt / info.fps < midpoint:
                        if (nxt - start_frame) % step == 0:
                            yield nxt, display_frame(prev[1], info.geometry, size)
                        nxt += 1
                if nxt >= end_frame:
                    return
                prev = (t, frame)
        except av.error.FFmpegError as err:
            raise Rejected(reasons.CORRUPT_MEDIA, f"decode error at frame {nxt}: {err}".splitlines()[0]) from err
        if prev is None:
            raise Rejected(reasons.CORRUPT_MEDIA, "no decodable video frame")
        last = display_frame(prev[1], info.geometry, size)
        while nxt < end_frame:  # the last frame holds until the stream's end
            if (nxt - start_frame) % step == 0:
                yield nxt, last
            nxt += 1


def load_audio(info: MediaInfo, sample_rate: int) -> np.ndarray:
    """The whole audio track as float32 mono at `sample_rate`, padded/trimmed to the video length."""
    chunks: list[np.ndarray] = []
    first_time: float | None = None
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    with _open(info.path) as container:
        stream = audio_stream(container)
        if stream is None:
            raise Rejected(reasons.NO_AUDIO, "the file has no audio stream")
        like = stream.codec_context
        try:
            for item in _decoded(container, stream, info.gaps):
                if isinstance(item, tuple):  # a skipped packet: silence in the decoder's own format
                    start, seconds = item
                    item = _silence(like.format.name, like.layout.name, like.sample_rate, seconds)
                    first_time = start if first_time is None else first_time  # the gap may open the stream
                else:
                    like = item
                if first_time is None and item.time is not None:
                    first_time = item.time
                for out in resampler.resample(item):
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


def _silence(fmt: str, layout: str, rate: int, seconds: float) -> av.AudioFrame:
    frame = av.AudioFrame(format=fmt, layout=layout, samples=max(1, int(round(seconds * rate))))
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    frame.sample_rate = rate
    return frame
