"""Manifest parts: the commit record of one source, written last and atomically.

`parts/<source_id>.<fingerprint>.parquet` holds the source's manifest rows; its Parquet metadata
holds the config it was made with (`result_keys` and their fingerprint), the source's content
identity (for duplicate detection) and seconds per step. A source is done, under a config, when
its part with that config's fingerprint exists: a listing of `parts/` alone tells what a re-run may
skip and whether the folder was made with another config, without reading any part. A part lists
the shards of the attempt that wrote it; every shard it lists was committed before it.
"""
from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import pyarrow.parquet as pq

from curation.config import CurationConfig
from curation.manifest import SCHEMA, ManifestRow, encode_manifest
from foundation.config import fingerprint, result_keys
from foundation.storage import Location

PART_DIR = "parts"
_META_KEY = b"hallo_forge"


@dataclass
class PartInfo:
    fingerprint: Optional[str]  # None: a part written before parts recorded their config
    result_keys: dict[str, Any] = field(default_factory=dict)
    content_keys: list[str] = field(default_factory=list)  # see curation.duplicates
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, cfg: CurationConfig, **extra: Any) -> "PartInfo":
        keys = result_keys(cfg)
        return cls(fingerprint(keys), keys, **extra)


def part_name(source_id: str, fp: str) -> str:
    return f"{source_id}.{fp}.parquet"


def parse_part_name(name: str) -> Optional[tuple[str, Optional[str]]]:
    """(source_id, fingerprint) of a part name; fingerprint None for the old `<source_id>.parquet`."""
    if name.startswith(".") or not name.endswith(".parquet"):
        return None
    stem = name.removesuffix(".parquet")
    source_id, _, fp = stem.partition(".")
    return source_id, fp or None


def list_parts(location: Location) -> dict[str, dict[Optional[str], str]]:
    """source_id -> {fingerprint: part name} of every committed part (one listing)."""
    found: dict[str, dict[Optional[str], str]] = {}
    for name in location.list(PART_DIR):
        parsed = parse_part_name(name)
        if parsed:
            found.setdefault(parsed[0], {})[parsed[1]] = name
    return found


def encode_part(rows: list[ManifestRow], info: PartInfo) -> bytes:
    return encode_manifest(rows, {_META_KEY: json.dumps(asdict(info), sort_keys=True, default=str)})


def decode_part(data: bytes) -> tuple[list[ManifestRow], PartInfo]:
    # One part is a few rows; arrow's thread pool buys nothing here and can abort the process at
    # exit (apache/arrow#34314: "terminate called without an active exception" from a parquet thread).
    table = pq.read_table(io.BytesIO(data), use_threads=False)
    meta = (table.schema.metadata or {}).get(_META_KEY)
    info = PartInfo(**json.loads(meta)) if meta else PartInfo(fingerprint=None)
    known = set(SCHEMA.names)
    rows = [ManifestRow(**{k: v for k, v in r.items() if k in known}) for r in table.to_pylist()]
    return rows, info


def write_part(location: Location, source_id: str, rows: list[ManifestRow], info: PartInfo) -> str:
    """Commit a source: its rows under its config's fingerprint. Returns the part's name."""
    name = part_name(source_id, info.fingerprint or "unknown")
    location.write_bytes(f"{PART_DIR}/{name}", encode_part(rows, info))
    return name


def read_parts(location: Location, names: list[str]) -> dict[str, tuple[list[ManifestRow], PartInfo]]:
    """Part name -> (rows, info), read concurrently."""
    data = location.read_many([f"{PART_DIR}/{name}" for name in names])
    return {name: decode_part(data[f"{PART_DIR}/{name}"]) for name in names}
