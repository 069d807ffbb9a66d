"""Audio in, video out, with PyAV (it bundles the ffmpeg libraries; no ffmpeg binary needed).

Video frames come out as a player shows them (`Geometry`): stretched to square pixels by the
stream's sample aspect ratio and turned upright by its display matrix; a caller that found black
bars (curation.media) also gets them cut off. Interlaced frames are deinterlaced
(foundation.deinterlace) and HDR ones tone-mapped to SDR BT.709 (foundation.tone_mapping).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import av
import cv2
import numpy as np

from foundation.deinterlace import progressive
from foundation.tone_mapping import HDR_TRANSFERS, to_sdr

log = logging.getLogger(__name__)

# counter-clockwise display turn -> cv2.rotate code (about 12x faster than copying a turned numpy view)
_CV2_TURNS = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}


def video_stream(container: av.container.InputContainer) -> Optional[av.VideoStream]:
    """The picture a player shows: the largest video stream that is not an attached picture (cover art), as
    ffmpeg chooses; a thumbnail track or cover art muxed before the video is not it. None: no such stream."""
    moving = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    return max(moving, key=lambda s: s.codec_context.width * s.codec_context.height, default=None)


def audio_stream(container: av.container.InputContainer) -> Optional[av.AudioStream]:
    """The track a player plays: the one flagged default (a dubbed or commentary track may come first), else the
    first. None: no audio stream."""
    tracks = list(container.streams.audio)
    return next((s for s in tracks if s.disposition & av.stream.Disposition.default), tracks[0] if tracks else None)


@dataclass(frozen=True)
class Geometry:
    """How a player shows a video stream's stored frames.

    The display frame is the stored one stretched to square pixels, then turned counter-clockwise by
    `rotation_deg` (the display matrix's rotation as ffmpeg's av_display_rotation_get reports it and
    its players apply it; mirroring in the matrix is ignored). The stretch grows the axis the sample
    aspect ratio shortens (the width when SAR > 1, the height when SAR < 1), so no stored detail is
    dropped.
    """

    width: int  # stored frame size
    height: int
    sample_aspect: float = 1.0  # SAR: width over height of one stored pixel
    rotation_deg: int = 0  # 0, 90, 180 or 270
    picture: Optional[tuple[int, int, int, int]] = None  # x, y, w, h inside black bars (full display frame); None: all

    @property
    def full_size(self) -> tuple[int, int]:
        """(width, height) of the whole display frame, bars included, at full resolution."""
        width, height = self.width, self.height
        if self.sample_aspect > 1:
            width = int(round(width * self.sample_aspect))
        elif self.sample_aspect < 1:
            height = int(round(height / self.sample_aspect))
        return (height, width) if self.rotation_deg % 180 else (width, height)

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) of the display frame at full resolution, black bars cut off."""
        return self.picture[2:] if self.picture else self.full_size

    def stored_size(self, display: tuple[int, int]) -> tuple[int, int]:
        """The size to scale a stored frame to so that, turned, it is `display` (width, height)."""
        return (display[1], display[0]) if self.rotation_deg % 180 else display


def stream_geometry(stream: av.video.stream.VideoStream, first: Optional[av.VideoFrame]) -> Geometry:
    """The stream's geometry; the rotation is read from its first decoded frame (libavcodec hands the
    container's display matrix to every frame), 0 without one."""
    sar = stream.sample_aspect_ratio
    rotation = 0
    if first is not None and first.rotation:
        rotation = int(round(first.rotation / 90)) * 90 % 360
        if abs(first.rotation - round(first.rotation / 90) * 90) > 1:
            log.warning("display rotation %s deg is not a multiple of 90; using %d", first.rotation, rotation)
    return Geometry(stream.codec_context.width, stream.codec_context.height,
                    float(sar) if sar and sar > 0 else 1.0, rotation)


def display_frame(frame: av.VideoFrame, geometry: Geometry, size: tuple[int, int]) -> np.ndarray:
    """RGB uint8 (H, W, 3) of one frame as shown, scaled to the display `size` (width, height).

    Scaling happens in swscale, on the stored frame, before the turn (cv2.rotate): shrinking uses its
    area filter (made for it, about a quarter cheaper than its default), the SAR stretch its default
    bilinear one.
    """
    full, left, top = size, 0, 0
    if geometry.picture:  # scale the whole frame so that its picture is `size`, then cut the bars off
        x, y, w, h = geometry.picture
        scale_x, scale_y = size[0] / w, size[1] / h
        whole = geometry.full_size
        full = (max(size[0], round(whole[0] * scale_x)), max(size[1], round(whole[1] * scale_y)))
        left, top = min(round(x * scale_x), full[0] - size[0]), min(round(y * scale_y), full[1] - size[1])
    width, height = geometry.stored_size(full)
    shrink = (width, height) != (frame.width, frame.height) and width <= frame.width and height <= frame.height
    interpolation = "AREA" if shrink else None
    if frame.color_trc in HDR_TRANSFERS:
        rgb = to_sdr(frame.to_ndarray(width=width, height=height, format="rgb48le", interpolation=interpolation),
                     frame.color_trc)
    else:
        rgb = frame.to_ndarray(width=width, height=height, format="rgb24", interpolation=interpolation)
    rgb = cv2.rotate(rgb, _CV2_TURNS[geometry.rotation_deg]) if geometry.rotation_deg else rgb
    if full == size:
        return rgb
    return np.ascontiguousarray(rgb[top:top + size[1], left:left + size[0]])


def read_audio(path: str | Path, sample_rate: int | None = None, mono: bool = True) -> tuple[np.ndarray, int]:
    """The played audio stream (`audio_stream`) as float32 (channels, samples); native rate/layout unless asked otherwise."""
    with av.open(str(path)) as container:
        stream = audio_stream(container)
        if stream is None:
            raise ValueError(f"{path} has no audio stream")
        rate = sample_rate or stream.codec_context.sample_rate
        layout = "mono" if mono or stream.codec_context.channels == 1 else "stereo"
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        chunks = [out.to_ndarray() for frame in container.decode(stream) for out in resampler.resample(frame)]
        chunks += [out.to_ndarray() for out in resampler.resample(None)]
    if not chunks:
        raise ValueError(f"{path}: the audio stream decodes to no samples")
    return np.concatenate(chunks, axis=1).astype(np.float32), rate


def read_video(path: str | Path, fps: int) -> np.ndarray:
    """Every frame of the shown video stream (`video_stream`) as RGB uint8 (T, H, W, 3) at a constant `fps`, upright with
    square pixels (`Geometry`): each tick takes the source frame whose timestamp is nearest (ties: the
    later one), as curation resamples (curation/media.py) and ffmpeg's fps filter does; frames are
    repeated or dropped as the rates need."""
    try:
        with av.open(str(path)) as container:
            stream = video_stream(container)
            if stream is None:
                raise ValueError(f"{path} has no video stream")
            decoded: list[tuple[float, np.ndarray]] = []
            geometry: Optional[Geometry] = None
            for frame in progressive(container.decode(stream)):
                if frame.time is None:
                    continue
                geometry = geometry or stream_geometry(stream, frame)
                decoded.append((frame.time, display_frame(frame, geometry, geometry.display_size)))
            end = float(stream.duration * stream.time_base) if stream.duration else None
    except av.error.FFmpegError as err:
        raise ValueError(f"{path}: cannot decode the video: {err}".splitlines()[0]) from err
    if not decoded:
        raise ValueError(f"{path}: the video stream decodes to no frames")
    times = np.array([t for t, _ in decoded]) - decoded[0][0]
    if end is None or end <= times[-1]:
        end = times[-1] + (np.median(np.diff(times)) if len(times) > 1 else 1 / fps)
    ticks = np.arange(int(round(end * fps))) / fps
    later = np.clip(np.searchsorted(times, ticks, side="left"), 0, len(decoded) - 1)
    earlier = np.clip(later - 1, 0, len(decoded) - 1)
    shown = np.where(ticks - times[earlier] < times[later] - ticks, earlier, later)
    return np.stack([decoded[i][1] for i in shown])


class VideoWriter:
    """H.264 mp4 written as the frames come: memory stays flat however long the video.

        with VideoWriter(path, fps, audio, sample_rate) as writer:
            for frames in clips:
                writer.write(frames)  # (T, H, W, 3) uint8 RGB

    audio (channels, samples) float32 goes in as AAC alongside the frames written so far, and stops
    where they stop (cut to the video). The file is complete once the writer closes.
    """

    def __init__(self, path: str | Path, fps: int, audio: np.ndarray | None = None, sample_rate: int = 16000) -> None:
        self.path, self.fps, self.audio, self.sample_rate = Path(path), fps, audio, sample_rate
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(self.path), "w")
        self.video = self.sound = None
        self.frames = self.samples = 0  # written so far

    def _open_streams(self, height: int, width: int) -> None:
        self.video = self.container.add_stream("libx264", rate=self.fps)
        self.video.width, self.video.height = width, height
        self.video.pix_fmt = "yuv420p"
        if self.audio is not None:
            layout = "mono" if self.audio.shape[0] == 1 else "stereo"
            self.sound = self.container.add_stream("aac", rate=self.sample_rate, layout=layout)

    def write(self, frames: np.ndarray) -> None:
        if self.video is None:
            self._open_streams(frames.shape[1], frames.shape[2])
        for frame in frames:
            self.container.mux(self.video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        self.frames += len(frames)
        self._write_audio(int(round(self.frames / self.fps * self.sample_rate)))

    def _write_audio(self, until: int) -> None:
        """The audio samples up to `until` not written yet (the audio interleaves with the video as it goes)."""
        if self.sound is None or self.audio is None or until <= self.samples:
            return
        samples = np.ascontiguousarray(self.audio[:, self.samples:until], np.float32)
        if samples.shape[1]:
            chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout=self.sound.layout.name)
            chunk.sample_rate = self.sample_rate
            self.container.mux(self.sound.encode(chunk))
        self.samples = until

    def close(self) -> None:
        try:
            if self.video is not None:
                self.container.mux(self.video.encode(None))
            if self.sound is not None:
                self.container.mux(self.sound.encode(None))
        finally:
            self.container.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: int,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
) -> None:
    """frames (T, H, W, 3) uint8 RGB -> H.264 mp4; audio (channels, samples) float32 -> AAC, cut to the video."""
    with VideoWriter(path, fps, audio, sample_rate) as writer:
        writer.write(frames)
