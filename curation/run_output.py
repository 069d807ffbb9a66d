"""The driver's side of the commit protocol: what a run finds in its output, and what it leaves there.

Before any work, `plan_run` lists the parts once: sources committed under this config's
fingerprint are skipped; sources committed under another config stop the run with exit 2 naming
the changed keys, unless the user asked to reprocess them. `write_run_config` then records the
resolved config in `config.json`.

After the last task, `finalize_output` makes the output consistent, which a store without rename needs
done explicitly: later copies of duplicate content are recorded as `duplicate`, parts superseded
by a reprocessed one are deleted, shards no committed part lists (an interrupted attempt, the
losing attempt of a retried source, a reprocessed source's old shards) are deleted, so are
previews no committed row names, and the manifest, summary, funnel and review page are written. Everything it does is idempotent, so a run killed
while settling settles again when re-run.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Optional

from curation import reasons
from curation.config import CurationConfig
from curation.duplicates import find_duplicates
from curation.manifest import ManifestRow, finalize, source_row
from curation.manifest_parts import PART_DIR, PartInfo, list_parts, read_parts, write_part
from curation.previews import PREVIEW_DIR, preview_name, preview_source
from curation.review import write_review
from curation.shards import SHARD_DIR, shard_source
from curation.sources import Source
from foundation.config import changed_keys, to_dict
from foundation.storage import Location

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"


class ConfigChanged(Exception):
    """The output holds sources made with another config; the message names the keys that differ."""


@dataclass
class RunPlan:
    todo: list[Source]
    finished: int  # sources skipped: committed under this config
    reprocess: int  # sources redone because their part has another config


def _describe_change(location: Location, stale: dict[str, dict[Optional[str], str]], info: PartInfo) -> str:
    """Which result keys differ between the stale parts' configs and this one (one part read per config)."""
    samples = {fp: name for fps in stale.values() for fp, name in fps.items()}
    old = read_parts(location, [name for fp, name in samples.items() if fp is not None])
    keys = sorted({key for _, old_info in old.values() for key in changed_keys(old_info.result_keys, info.result_keys)})
    what = ", ".join(keys)
    if None in samples:
        what = ", ".join(filter(None, [what, "parts written before configs were recorded"]))
    return (f"{location.uri()} holds {len(stale)} source(s) curated with another config (changed: {what}); "
            "re-run with --reprocess to redo them with this config, or choose another --out")


def plan_run(location: Location, sources: list[Source], cfg: CurationConfig, retry_failed: bool = False,
             reprocess: bool = False) -> RunPlan:
    """Which sources this run must process; raises ConfigChanged (see the module docstring)."""
    info = PartInfo.of(cfg)
    parts = list_parts(location)
    ids = {s.source_id for s in sources}
    done = {sid for sid in ids if info.fingerprint in parts.get(sid, {})}
    stale = {sid: parts[sid] for sid in ids - done if sid in parts}
    if stale and not reprocess:
        raise ConfigChanged(_describe_change(location, stale, info))
    if retry_failed and done:
        loaded = read_parts(location, [parts[sid][info.fingerprint] for sid in done])
        done -= {rows[0].source_id for rows, _ in loaded.values() if any(r.status == "failed" for r in rows)}
    todo = [s for s in sources if s.source_id not in done]
    return RunPlan(todo, finished=len(sources) - len(todo), reprocess=len(stale))


def write_run_config(location: Location, cfg: CurationConfig) -> None:
    """The resolved config and its fingerprint, for the record (parts carry their own)."""
    info = PartInfo.of(cfg)
    record = {"fingerprint": info.fingerprint, "result_keys": info.result_keys, "config": to_dict(cfg)}
    location.write_bytes(CONFIG_FILE, json.dumps(record, indent=2, sort_keys=True, default=str).encode())


def _duplicate_row(rows: list[ManifestRow], raw: str, kept_raw: str, shared: list[str]) -> ManifestRow:
    first = rows[0]
    what = ("the same media bytes as" if not shared or shared[0].startswith("sha256:")
            else f"the same video ({shared[0].removeprefix('video:')}) as")
    return source_row(raw, first.source_id, reasons.DUPLICATE, f"{what} {kept_raw}",
                      source_duration_s=first.source_duration_s, title=first.title,
                      webpage_url=first.webpage_url, license=first.license)


def _is_duplicate(rows: list[ManifestRow]) -> bool:
    return len(rows) == 1 and rows[0].reason == reasons.DUPLICATE


def _staged_name(name: str) -> Optional[str]:
    """The file a local staging file `.<name>.<uuid>.tmp` left by a killed task was to become."""
    if name.startswith(".") and name.endswith(".tmp"):
        return name[1:].rsplit(".", 2)[0]
    return None


def _staged_shard_source(name: str) -> Optional[str]:
    staged = _staged_name(name)
    return shard_source(staged) if staged else None


def _orphan_previews(location: Location, rows: list[ManifestRow], ids: set[str]) -> list[str]:
    """Previews of this run's sources that no committed row names (a superseded or uncommitted attempt)."""
    named = {preview_name(r.clip_id) for r in rows if r.clip_id}
    return [f"{PREVIEW_DIR}/{name}" for name in location.list(PREVIEW_DIR)
            if name not in named and preview_source(_staged_name(name) or name) in ids]


def finalize_output(location: Location, sources: list[Source], cfg: CurationConfig, extra_rows: list[ManifestRow],
           wall_s: float) -> dict:
    """Reconcile duplicates, delete superseded parts and orphan shards, write the manifest; returns the summary.

    `extra_rows` are rows without a part (unsupported list entries, crashed sources).
    """
    fp = PartInfo.of(cfg).fingerprint
    parts = list_parts(location)
    without_part = {r.source_id for r in extra_rows}  # a crash this run outranks an older part
    current = {s.source_id: parts[s.source_id][fp] for s in sources
               if fp in parts.get(s.source_id, {}) and s.source_id not in without_part}
    loaded = read_parts(location, list(current.values()))
    by_source = {sid: loaded[name] for sid, name in current.items()}

    raw = {s.source_id: s.raw for s in sources}
    live = {sid: info.content_keys for sid, (rows, info) in by_source.items() if not _is_duplicate(rows)}
    for later, kept in find_duplicates([s.source_id for s in sources], live).items():
        rows, info = by_source[later]
        shared = sorted(set(live[later]) & set(live[kept]))
        demoted = [_duplicate_row(rows, raw[later], raw[kept], shared)]
        write_part(location, later, demoted, info)
        by_source[later] = (demoted, info)
        log.info("source %s is a duplicate of %s: recorded as duplicate", raw[later], raw[kept])

    superseded = [f"{PART_DIR}/{name}" for sid in current for other, name in parts[sid].items() if other != fp]
    referenced = {r.shard for rows, _ in by_source.values() for r in rows if r.shard}
    ids = set(raw)
    orphans = [f"{SHARD_DIR}/{name}" for name in location.list(SHARD_DIR) if name not in referenced
               and (shard_source(name) in ids or _staged_shard_source(name) in ids)]
    rows = [row for rows, _ in by_source.values() for row in rows] + extra_rows
    previews = _orphan_previews(location, rows, ids)
    if superseded or orphans or previews:
        log.info("deleting %d superseded part(s), %d orphan shard(s) and %d orphan preview(s)", len(superseded),
                 len(orphans), len(previews))
        location.delete(superseded + orphans + previews)

    stage_seconds: Counter[str] = Counter()
    for _, info in by_source.values():
        stage_seconds.update(info.stage_seconds)
    extra = {"config_fingerprint": fp, "stage_seconds": {k: round(v, 2) for k, v in sorted(stage_seconds.items())}}
    summary = finalize(location, rows, wall_s, extra, metadata={"config_fingerprint": fp})
    if cfg.review.enabled:
        write_review(location, cfg.review)
    return summary
