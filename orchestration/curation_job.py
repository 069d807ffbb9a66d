"""Schedules curation on Ray: one task per source, bounded in flight, retried only when a worker dies.

Deterministic outcomes (bad media, no face, even our own bugs) come back as manifest rows and are
never retried; a crashed worker (OOM, SIGKILL, lost node) is retried `run.max_retries` times by
Ray and then recorded as `worker_crashed`, without a committed part, so the next run retries it.
Tasks write straight into the output location (a shared folder or an object store); the commit
protocol (curation.shards, curation.manifest_parts, curation.run_output) makes retries and re-runs safe there.
The driver logs one line per finished source with the run's progress, rate and time left.

Each task declares its resources (`run.cpus_per_task`, `run.gpus_per_task`, custom `run.resources`
such as cluster.yaml's `curation` pool), and at most `run.max_in_flight_per_domain` sources of one
web domain run at once, cluster-wide, so a site never sees more parallel downloads than that.
"""
from __future__ import annotations

import logging
import time
from collections import Counter, deque
from typing import Callable, Optional
from urllib.parse import urlsplit

import ray
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from curation import reasons
from curation.config import CurationConfig
from curation.manifest import ManifestRow, source_row
from curation.pipeline import process_source_safely
from curation.reasons import Rejected
from curation.run_output import RunPlan, finalize_output, write_run_config
from curation.sources import Source, source_id_of
from foundation.storage import Location

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
def _source_task(source: Source, out: Location, cfg: CurationConfig) -> tuple[list[ManifestRow], float]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    started = time.perf_counter()
    rows = process_source_safely(source, out, cfg)
    return rows, time.perf_counter() - started


def outcome(rows: list[ManifestRow]) -> str:
    """One word or two for a finished source: `accepted`, or its status with the reasons."""
    if any(r.status == "accepted" for r in rows):
        return "accepted"
    return f"{rows[0].status} ({', '.join(sorted({r.reason or '' for r in rows}))})"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """Sources finished so far, their rate and the time left, for the driver's log (a bar needs a TTY)."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, time.perf_counter()

    def finished(self) -> str:
        self.done += 1
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate
        return f"[{self.done}/{self.total}, {rate * 60:.1f} sources/min, ETA {_duration(eta)}]"


def run_curation(
    sources: list[Source],
    unsupported: list[tuple[str, Rejected]],
    out: Location,
    cfg: CurationConfig,
    plan: RunPlan,
    connect: Callable[[], None],
) -> dict:
    """Process the plan's sources (Ray is started by `connect`, only if there is any), then finalize the output."""
    started = time.perf_counter()
    log.info("%d sources, %d already finished, %d to do%s", len(sources), plan.finished, len(plan.todo),
             f" ({plan.reprocess} reprocessed under the new config)" if plan.reprocess else "")
    write_run_config(out, cfg)
    crashed = _run_tasks(plan.todo, out, cfg, connect) if plan.todo else []
    extra = crashed + [source_row(raw, source_id_of(raw), rej.reason, rej.detail) for raw, rej in unsupported]
    return finalize_output(out, sources, cfg, extra, time.perf_counter() - started)


def _run_tasks(todo: list[Source], out: Location, cfg: CurationConfig, connect: Callable[[], None]) -> list[ManifestRow]:
    """Every source of `todo` as a Ray task; returns the rows of sources whose workers kept crashing."""
    connect()
    crashed: list[ManifestRow] = []
    task = _source_task.options(num_cpus=cfg.run.cpus_per_task, num_gpus=cfg.run.gpus_per_task,
                                resources=cfg.run.resources, max_retries=cfg.run.max_retries, retry_exceptions=False)
    limit = cfg.run.max_in_flight or max(1, int(2 * ray.cluster_resources().get("CPU", 1)))
    pending: dict[ray.ObjectRef, Source] = {}
    queue = SourceQueue(todo, cfg.run.max_in_flight_per_domain)
    progress = Progress(len(todo))
    with tqdm(total=len(todo), desc="sources", unit="src", disable=None) as bar, logging_redirect_tqdm():
        while queue or pending:
            while len(pending) < limit and (source := queue.take()) is not None:
                pending[task.remote(source, out, cfg)] = source
            ready, _ = ray.wait(list(pending), num_returns=1)
            source = pending.pop(ready[0])
            queue.finished(source)
            try:
                rows, seconds = ray.get(ready[0])
            except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                    ray.exceptions.OwnerDiedError, ray.exceptions.RayTaskError) as err:
                log.error("source %s failed after retries: %s", source.raw, err)
                rows, seconds = [source_row(source.raw, source.source_id, reasons.WORKER_CRASHED,
                                            str(err).splitlines()[0])], 0.0
                crashed += rows
            accepted = sum(r.status == "accepted" for r in rows)
            log.info("source %s %s: %s, %d clip(s) accepted, %.1f s %s", source.source_id, source.raw,
                     outcome(rows), accepted, seconds, progress.finished())
            bar.update(1)
    return crashed
