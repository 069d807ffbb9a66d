"""Schedules the latent cache on Ray: one task per shard, bounded in flight, on GPUs when the cluster has any.

Each task keeps its VAE loaded for the next shard (its worker is reused). A task that raises
(an unreadable shard) is recorded as failed and not retried; a crashed worker (OOM, lost node) is
retried `run.max_retries` times by Ray. Either way the shard has no report under `parts/`, so
the next run does it again, while every shard with a report is skipped.
"""
from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import ray
from tqdm import tqdm

from foundation.config import ConfigError
from training.config import CacheEncodeConfig, LatentCacheConfig
from training.latent_cache.encode import ClipEncoder, ShardReport, build_cache_shard, read_report
from training.latent_cache.format import FORMAT

log = logging.getLogger(__name__)

CACHE_FILE = "cache.json"
SUMMARY_FILE = "summary.json"
_encoders: dict[str, ClipEncoder] = {}


@ray.remote(max_calls=0)  # keep the worker, and its loaded VAE, for the next shard (GPU tasks default to 1)
def _shard_task(shard: str, out_dir: str, cfg: CacheEncodeConfig) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    key = json.dumps(asdict(cfg), sort_keys=True)
    if key not in _encoders:  # once per worker process, which Ray reuses for the next shard
        _encoders.clear()
        _encoders[key] = ClipEncoder(cfg)
    encoder = _encoders[key]
    return asdict(build_cache_shard(shard, Path(out_dir), encoder, encoder.identity, cfg.resolution))


class CacheConflict(ConfigError):
    """--out holds a cache made with another VAE, resolution or precision."""


def claim_folder(out_dir: Path, identity: dict[str, Any]) -> None:
    """Write `cache.json` (what the cache is made with), or check that the existing one matches."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CACHE_FILE
    if path.is_file():
        found = json.loads(path.read_text())
        changed = sorted(k for k in identity if found.get(k) != identity[k])
        if changed:
            raise CacheConflict(f"{out_dir} holds a cache made with other {', '.join(changed)} "
                                f"({', '.join(f'{k}={found.get(k)}' for k in changed)}): choose another --out or delete it")
        return
    tmp = path.with_name(f".{CACHE_FILE}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(identity, indent=1))
    os.replace(tmp, path)


def summarize(out_dir: Path, shards: list[str], failed: dict[str, str], seconds: float) -> dict[str, Any]:
    """Totals over every finished shard (this run's and earlier ones'), written to summary.json."""
    reports = [r for r in (read_report(out_dir, s.rsplit("/", 1)[-1]) for s in shards) if r is not None]
    video_h = sum(r.video_s for r in reports) / 3600
    size = sum(r.bytes for r in reports)
    summary = {
        "shards": len(shards), "done": len(reports), "failed": failed,
        "samples": sum(r.samples for r in reports), "samples_with_error": sum(r.errors for r in reports),
        "frames": sum(r.frames for r in reports), "video_hours": round(video_h, 4), "gigabytes": round(size / 1e9, 4),
        "gigabytes_per_video_hour": round(size / 1e9 / video_h, 3) if video_h else None,
        "seconds": round(seconds, 1),
    }
    tmp = out_dir / f".{SUMMARY_FILE}.{uuid.uuid4().hex}.tmp"
    tmp.write_text(json.dumps(summary, indent=1, sort_keys=True))
    os.replace(tmp, out_dir / SUMMARY_FILE)
    return summary


def cache_identity(cfg: LatentCacheConfig, vae: str) -> dict[str, Any]:
    """What makes two caches interchangeable (cache.json): the format, the VAE's weights, size and precision."""
    return {"format": FORMAT, "vae": vae, "resolution": cfg.encode.resolution, "precision": cfg.encode.precision}


def run_cache(shards: list[str], out_dir: Path, cfg: LatentCacheConfig) -> dict[str, Any]:
    """Cache every shard without a report under out_dir (claimed with claim_folder first); returns the summary."""
    started = time.perf_counter()
    todo = [s for s in shards if read_report(out_dir, s.rsplit("/", 1)[-1]) is None
            or not (out_dir / s.rsplit("/", 1)[-1]).is_file()]
    log.info("%d shards, %d already cached, %d to do", len(shards), len(shards) - len(todo), len(todo))
    resources = ray.cluster_resources()
    gpus = cfg.run.gpus_per_task if cfg.run.gpus_per_task is not None else float(resources.get("GPU", 0) > 0)
    task = _shard_task.options(num_cpus=cfg.run.cpus_per_task, num_gpus=gpus, max_retries=cfg.run.max_retries,
                               retry_exceptions=False)
    slots = resources.get("GPU", 0) / gpus if gpus else resources.get("CPU", 1) / max(cfg.run.cpus_per_task, 1e-3)
    limit = cfg.run.max_in_flight or max(1, int(2 * slots))
    log.info("shard tasks: %g GPU and %g CPU each, at most %d in flight", gpus, cfg.run.cpus_per_task, limit)
    pending: dict[ray.ObjectRef, str] = {}
    queue = list(reversed(todo))
    failed: dict[str, str] = {}
    with tqdm(total=len(todo), desc="shards", unit="shard", disable=None) as bar:
        while queue or pending:
            while queue and len(pending) < limit:
                shard = queue.pop()
                pending[task.remote(shard, str(out_dir), cfg.encode)] = shard
            ready, _ = ray.wait(list(pending), num_returns=1)
            shard = pending.pop(ready[0])
            try:
                report = ShardReport(**ray.get(ready[0]))
                log.info("cached %s: %d samples (%d with errors), %d frames, %.1f MB in %.1f s", report.name,
                         report.samples, report.errors, report.frames, report.bytes / 1e6, report.seconds)
            except (ray.exceptions.RayTaskError, ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                    ray.exceptions.OwnerDiedError) as err:
                failed[shard] = str(err).strip().splitlines()[-1][:300]
                log.error("shard %s failed: %s", shard, failed[shard])
            bar.update(1)
    return summarize(out_dir, shards, failed, time.perf_counter() - started)
