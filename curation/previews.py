"""Preview strips of candidate clips for the review page, captured from the analysis decode.

Only accepted clips are stored in shards, so to show what a filter threw away the pipeline keeps a
small JPEG of every `stride`-th low-resolution analysis frame while it decodes them anyway
(`PreviewRecorder.feed`). Before the source's part is committed, `write` picks a sample of its
candidate clips (the 1st, (N+1)th, ... of each reason, and of the accepted ones) and writes for
each a strip of a few of those frames, face boxes drawn, as `previews/<clip_id>.jpg`. The name is
the clip id, which depends on the source and the frames only: a re-run of the source overwrites
its previews instead of adding to them, and finalize_output deletes those no committed row names.
"""
from __future__ import annotations

import logging
from collections import Counter
from typing import Optional, Sequence

import cv2
import numpy as np

from curation.config import CurationConfig
from curation.manifest import ManifestRow
from curation.media import MediaInfo, scaled_size
from curation.timing import stage
from foundation.faces import FrameFaces
from foundation.storage import Location

log = logging.getLogger(__name__)

PREVIEW_DIR = "previews"
_MAIN_FACE_RGB = (40, 220, 90)
_OTHER_FACE_RGB = (255, 170, 0)
_GAP_PX = 3
_JPEG_QUALITY = 85


def preview_name(clip_id: str) -> str:
    return f"{clip_id}.jpg"


def preview_source(name: str) -> Optional[str]:
    """The source id of a preview file name (`<source_id>_<start>_<end>.jpg`), None for other names."""
    parts = name.removesuffix(".jpg").rsplit("_", 2)
    return parts[0] if name.endswith(".jpg") and len(parts) == 3 and all(p.isdigit() for p in parts[1:]) else None


def pick_rows(rows: Sequence[ManifestRow], every: int) -> list[ManifestRow]:
    """The clips that get a preview: per reason (None = accepted), the 1st, (every+1)th, ... in source order."""
    seen: Counter[Optional[str]] = Counter()
    picked = []
    for row in rows:
        if row.clip_id is None:
            continue
        if seen[row.reason] % every == 0:
            picked.append(row)
        seen[row.reason] += 1
    return picked


def _jpeg(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


class PreviewRecorder:
    """Small frames of one source's analysis decode, then the preview strips of a sample of its clips.

    The kept frames are JPEG-compressed (a few kB each, one every `stride` frames: an hour-long
    source at 25 fps holds about 60 MB), so memory stays small whatever the source's length.
    """

    def __init__(self, info: MediaInfo, cfg: CurationConfig) -> None:
        self.cfg = cfg.review
        self.fps = info.fps
        # the shortest clip kept still spans `preview_frames` kept frames
        self.stride = max(1, int(cfg.clips.min_s * info.fps) // self.cfg.preview_frames)
        self.size = scaled_size(info.width, info.height, self.cfg.preview_px)
        self.frames: dict[int, bytes] = {}

    def feed(self, index: int, frame: np.ndarray) -> None:
        """Called with every analysis frame, in order; keeps every `stride`-th one."""
        if index % self.stride:
            return
        with stage("previews"):
            self.frames[index] = _jpeg(cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA))

    def _indices(self, start: int, end: int) -> list[int]:
        """Up to `preview_frames` kept frames spread over [start, end); the nearest kept one if none falls inside."""
        inside = [i for i in range(start - start % self.stride, end, self.stride) if i >= start and i in self.frames]
        if not inside:
            middle = (start + end) // 2
            nearest = min(self.frames, key=lambda i: abs(i - middle), default=None)
            return [] if nearest is None else [nearest]
        picks = np.linspace(0, len(inside) - 1, min(self.cfg.preview_frames, len(inside))).round().astype(int)
        return [inside[k] for k in picks]

    def strip(self, start: int, end: int, faces: Sequence[FrameFaces]) -> Optional[bytes]:
        """The JPEG strip of frames [start, end) with their face boxes (main face green, others amber)."""
        tiles = []
        for index in self._indices(start, end):
            tile = cv2.cvtColor(cv2.imdecode(np.frombuffer(self.frames[index], np.uint8), cv2.IMREAD_COLOR),
                                cv2.COLOR_BGR2RGB)
            h, w = tile.shape[:2]
            boxes = faces[index].boxes if index < len(faces) else np.zeros((0, 4))
            for k, box in enumerate(boxes):
                x0, y0, x1, y1 = (np.asarray(box, np.float64) * (w, h, w, h)).round().astype(int)
                cv2.rectangle(tile, (int(x0), int(y0)), (int(x1), int(y1)), _MAIN_FACE_RGB if k == 0 else _OTHER_FACE_RGB, 2)
            label = f"{index / self.fps:.1f}s"
            cv2.putText(tile, label, (5, h - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(tile, label, (5, h - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
            tiles += [tile, np.full((h, _GAP_PX, 3), 32, np.uint8)]
        return _jpeg(np.concatenate(tiles[:-1], axis=1)) if tiles else None

    def write(self, location: Location, source_id: str, rows: Sequence[ManifestRow],
              faces: Sequence[FrameFaces]) -> list[str]:
        """Write the previews of a sample of `rows` (the source's final rows, before its part); returns their names."""
        written = []
        with stage("previews"):
            for row in pick_rows(rows, self.cfg.preview_every):
                assert row.clip_id is not None and row.start_s is not None and row.end_s is not None
                data = self.strip(round(row.start_s * self.fps), round(row.end_s * self.fps), faces)
                if data is not None:
                    name = preview_name(row.clip_id)
                    location.write_bytes(f"{PREVIEW_DIR}/{name}", data)
                    written.append(name)
        log.debug("%s: %d preview(s) of %d row(s)", source_id, len(written), len(rows))
        self.frames.clear()
        return written
