"""Schedules curation on Ray: one task per source, bounded in flight, retried only when a worker dies.

Deterministic outcomes (bad media, no face, even our own bugs) come back as manifest rows and are
never retried; a crashed worker (OOM, SIGKILL, lost node) is retried `run.max_retries` times by
Ray and then recorded as `worker_crashed`, without a committed part, so the next run retries it.

Each task declares its resources (`run.cpus_per_task`, `run.gpus_per_task`, custom `run.resources`
such as cluster.yaml's `curation` pool), and at most `run.max_in_flight_per_domain` sources of one
web domain run at once, cluster-wide, so a site never sees more parallel downloads than that.
"""
from __future__ import annotations

import logging
import time
from collections import Counter, deque
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

import ray
from tqdm import tqdm

from curation import reasons
from curation.config import CurationConfig
from curation.manifest import ManifestRow, finalize, finished_sources, read_part, source_row
from curation.pipeline import process_source_safely
from curation.reasons import Rejected
from curation.sources import Source, source_id_of
from orchestration.ray_setup import init_ray  # noqa: F401  (curation.run imports it from here)

log = logging.getLogger(__name__)


def domain_of(source: Source) -> Optional[str]:
    """The web host a source is downloaded from; local files have none."""
    return urlsplit(source.normalized).hostname if source.kind == "url" else None


class SourceQueue:
    """Sources waiting to be submitted, per domain, so a domain at its limit never blocks the others."""

    def __init__(self, sources: list[Source], per_domain: int) -> None:
        self._waiting: dict[Optional[str], deque[Source]] = {}
        for source in sources:
            self._waiting.setdefault(domain_of(source), deque()).append(source)
        self._running: Counter[Optional[str]] = Counter()
        self._per_domain = per_domain

    def __len__(self) -> int:
        return sum(map(len, self._waiting.values()))

    def _allowed(self, domain: Optional[str]) -> bool:
        return domain is None or not self._per_domain or self._running[domain] < self._per_domain

    def take(self) -> Optional[Source]:
        """The next source that may start now (counted as running), or None if all must wait."""
        for domain, waiting in self._waiting.items():
            if self._allowed(domain):
                source = waiting.popleft()
                if not waiting:
                    del self._waiting[domain]  # safe: the loop ends here
                self._running[domain] += 1
                return source
        return None

    def finished(self, source: Source) -> None:
        self._running[domain_of(source)] -= 1


@ray.remote
def _source_task(source: Source, out_dir: str, cfg: CurationConfig) -> list[ManifestRow]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return process_source_safely(source, Path(out_dir), cfg)


def run_curation(
    sources: list[Source],
    unsupported: list[tuple[str, Rejected]],
    out_dir: Path,
    cfg: CurationConfig,
    retry_failed: bool = False,
) -> dict:
    """Process every source not yet committed under out_dir, then write manifest + summary."""
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    done = finished_sources(out_dir, retry_failed)
    todo = [s for s in sources if s.source_id not in done]
    log.info("%d sources, %d already finished, %d to do", len(sources), len(sources) - len(todo), len(todo))

    crashed: list[ManifestRow] = []
    task = _source_task.options(num_cpus=cfg.run.cpus_per_task, num_gpus=cfg.run.gpus_per_task,
                                resources=cfg.run.resources, max_retries=cfg.run.max_retries, retry_exceptions=False)
    limit = cfg.run.max_in_flight or max(1, int(2 * ray.cluster_resources().get("CPU", 1)))
    pending: dict[ray.ObjectRef, Source] = {}
    queue = SourceQueue(todo, cfg.run.max_in_flight_per_domain)
    with tqdm(total=len(todo), desc="sources", unit="src", disable=None) as bar:
        while queue or pending:
            while len(pending) < limit and (source := queue.take()) is not None:
                pending[task.remote(source, str(out_dir), cfg)] = source
            ready, _ = ray.wait(list(pending), num_returns=1)
            source = pending.pop(ready[0])
            queue.finished(source)
            try:
                ray.get(ready[0])
            except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                    ray.exceptions.OwnerDiedError, ray.exceptions.RayTaskError) as err:
                log.error("source %s failed after retries: %s", source.raw, err)
                crashed.append(source_row(source.raw, source.source_id, reasons.WORKER_CRASHED,
                                          str(err).splitlines()[0]))
            bar.update(1)

    crashed_ids = {r.source_id for r in crashed}
    rows = [row for s in sources if s.source_id not in crashed_ids for row in read_part(out_dir, s.source_id)]
    rows += crashed
    rows += [source_row(raw, source_id_of(raw), rej.reason, rej.detail) for raw, rej in unsupported]
    return finalize(out_dir, rows, time.perf_counter() - started)
