"""Atomic WebDataset shard writing: a shard file appears complete or not at all.

Each source writes its own shards, `<source_id>-<n>.tar`, so a source can be redone on its own
(resume after a crash) without touching other sources' samples.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import webdataset as wds

from curation.config import ShardsConfig


def atomic_replace(tmp: Path, final: Path) -> None:
    """fsync then rename, so a crash leaves either the old file or the complete new one."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)


class SourceShardWriter:
    """Rolls over to a new shard after `max_samples` or `max_mb`; renames each shard on close."""

    def __init__(self, shard_dir: Path, source_id: str, cfg: ShardsConfig) -> None:
        self.shard_dir = shard_dir
        self.source_id = source_id
        self.cfg = cfg
        self.written: list[str] = []  # final shard file names
        self._writer: wds.TarWriter | None = None
        self._tmp: Path | None = None
        self._count = 0
        self._bytes = 0
        shard_dir.mkdir(parents=True, exist_ok=True)
        for stale in shard_dir.glob(f"{source_id}-*.tar"):  # left by an earlier, unfinished attempt
            stale.unlink()

    def _final_name(self) -> str:
        return f"{self.source_id}-{len(self.written):04d}.tar"

    def _close_current(self) -> None:
        if self._writer is None or self._tmp is None:
            return
        self._writer.close()
        name = self._final_name()
        atomic_replace(self._tmp, self.shard_dir / name)
        self.written.append(name)
        self._writer, self._tmp, self._count, self._bytes = None, None, 0, 0

    def write(self, sample: dict[str, Any]) -> str:
        """Write one sample; return the name of the shard it lands in."""
        size = sum(len(v) for v in sample.values() if isinstance(v, (bytes, bytearray)))
        if self._writer is not None and (
            self._count >= self.cfg.max_samples or (self._bytes + size) / 2**20 > self.cfg.max_mb
        ):
            self._close_current()
        if self._writer is None:
            self._tmp = self.shard_dir / f".{self._final_name()}.{uuid.uuid4().hex}.tmp"
            self._writer = wds.TarWriter(str(self._tmp))
        self._writer.write(sample)
        self._count += 1
        self._bytes += size
        return self._final_name()

    def close(self) -> list[str]:
        self._close_current()
        return self.written

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
        for name in self.written:
            (self.shard_dir / name).unlink(missing_ok=True)
        self.written = []
