"""Atomic WebDataset shard writing: a shard appears complete or not at all, on a local disk or an object store.

Each attempt at a source writes its own shards, `shards/<source_id>-<attempt>-<n>.tar`, with a fresh
random attempt id: two attempts of one source (a Ray retry after a lost node, a re-run) never
overwrite each other's objects. The source's manifest part, written last, lists the shards of the
attempt that committed it; shards no part lists are orphans, deleted when the run settles
(curation.run_output).
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Optional

import webdataset as wds

from curation.config import ShardsConfig
from curation.timing import stage
from foundation.storage import Location

SHARD_DIR = "shards"


def shard_name(source_id: str, attempt: str, index: int) -> str:
    return f"{source_id}-{attempt}-{index:04d}.tar"


def shard_source(name: str) -> Optional[str]:
    """The source id a shard name belongs to, or None for a name this writer never makes."""
    parts = name.removesuffix(".tar").rsplit("-", 2)
    return parts[0] if name.endswith(".tar") and len(parts) == 3 and parts[2].isdigit() else None


class SourceShardWriter:
    """Rolls over to a new shard after `max_samples` or `max_mb`; commits each shard on close."""

    def __init__(self, location: Location | Path | str, source_id: str, cfg: ShardsConfig) -> None:
        self.location = location if isinstance(location, Location) else Location(location)
        self.source_id = source_id
        self.attempt = uuid.uuid4().hex[:8]
        self.cfg = cfg
        self.written: list[str] = []  # committed shard names
        self._writer: wds.TarWriter | None = None
        self._staged: Path | None = None
        self._count = 0
        self._bytes = 0

    def _name(self) -> str:
        return shard_name(self.source_id, self.attempt, len(self.written))

    def _close_current(self) -> None:
        if self._writer is None or self._staged is None:
            return
        self._writer.close()
        name = self._name()
        with stage("shard_commit"):
            self.location.commit(self._staged, f"{SHARD_DIR}/{name}")
        self.written.append(name)
        self._writer, self._staged, self._count, self._bytes = None, None, 0, 0

    def write(self, sample: dict[str, Any]) -> str:
        """Write one sample; return the name of the shard it lands in."""
        size = sum(len(v) for v in sample.values() if isinstance(v, (bytes, bytearray)))
        if self._writer is not None and (
            self._count >= self.cfg.max_samples or (self._bytes + size) / 2**20 > self.cfg.max_mb
        ):
            self._close_current()
        if self._writer is None:
            self._staged = self.location.staging_file(f"{SHARD_DIR}/{self._name()}")
            self._writer = wds.TarWriter(str(self._staged))
        self._writer.write(sample)
        self._count += 1
        self._bytes += size
        return self._name()

    def close(self) -> list[str]:
        self._close_current()
        return self.written

    def abort(self) -> None:
        """Remove what this attempt wrote (its committed shards and the one in progress)."""
        if self._writer is not None:
            self._writer.close()
        if self._staged is not None:
            self._staged.unlink(missing_ok=True)
        self.location.delete(f"{SHARD_DIR}/{name}" for name in self.written)
        self.written = []
