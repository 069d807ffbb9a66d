"""A long source says how far it is: the frame analysis (most of a source's time) logs a line every
run.progress_every_s seconds with the video seconds analysed, the speed and the analysis' ETA."""
from __future__ import annotations

import logging
import time

log = logging.getLogger("curation")


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class SourceProgress:
    def __init__(self, name: str, num_frames: int, fps: float, every_s: float) -> None:
        self.name, self.total_s, self.fps, self.every_s = name, num_frames / fps, fps, every_s
        self.started = self.last = time.monotonic()

    def frame(self, index: int) -> None:
        """Before frame `index` (0-based, at the normalised rate) is analysed: frames 0..index-1 are done."""
        now = time.monotonic()
        if now - self.last < self.every_s:
            return
        self.last = now
        done = index / self.fps
        speed = done / max(now - self.started, 1e-9)
        log.info("%s: analysed %.0f of %.0f s of video (%.0f%%), %.2fx real time, analysis ETA %s; clips follow",
                 self.name, done, self.total_s, 100 * done / max(self.total_s, 1e-9), speed,
                 duration((self.total_s - done) / max(speed, 1e-9)))
