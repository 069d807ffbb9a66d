"""Interlaced video (broadcast, DV, 1080i camcorders) made progressive, as players do, with ffmpeg's bwdif.

An interlaced frame holds two fields taken a field period apart; read as one picture, anything that
moves (a mouth, a turning head) shows comb teeth, which crops and training would keep. bwdif
(motion-adaptive, ffmpeg's default choice for players) rebuilds each frame from its first field
and its neighbours, at the same frame rate and timestamps.
"""
from __future__ import annotations

from typing import Iterable, Iterator, Optional

import av
import av.filter

BWDIF = "mode=send_frame:parity=auto:deint=interlaced"  # one frame out per frame in; progressive ones pass


class Deinterlacer:
    """Decoded video frames in, in order; the same frames out, progressive.

    The filter starts at the first frame flagged interlaced, so a progressive stream never pays for it;
    from then on every frame goes through it and comes out one frame late (`flush` gives the last).
    """

    def __init__(self) -> None:
        self._graph: Optional[av.filter.Graph] = None

    def push(self, frame: av.VideoFrame) -> list[av.VideoFrame]:
        if self._graph is None:
            if not frame.interlaced_frame:
                return [frame]
            self._graph = _bwdif_graph(frame)
        self._graph.push(frame)
        return self._pulled()

    def flush(self) -> list[av.VideoFrame]:
        if self._graph is None:
            return []
        self._graph.push(None)
        return self._pulled()

    def _pulled(self) -> list[av.VideoFrame]:
        frames = []
        while True:
            try:
                frames.append(self._graph.pull())
            except (av.error.BlockingIOError, av.error.EOFError):
                return frames


def _bwdif_graph(like: av.VideoFrame) -> av.filter.Graph:
    graph = av.filter.Graph()
    source = graph.add_buffer(width=like.width, height=like.height, format=like.format, time_base=like.time_base)
    bwdif, sink = graph.add("bwdif", BWDIF), graph.add("buffersink")
    source.link_to(bwdif)
    bwdif.link_to(sink)
    graph.configure()
    return graph


def progressive(frames: Iterable[av.VideoFrame]) -> Iterator[av.VideoFrame]:
    """`frames` with the interlaced ones deinterlaced (see `Deinterlacer`)."""
    deinterlacer = Deinterlacer()
    for frame in frames:
        yield from deinterlacer.push(frame)
    yield from deinterlacer.flush()
