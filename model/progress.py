"""Progress of a long generation, clip by clip: a tqdm bar on a terminal, log lines everywhere else.

A job's log or a redirected stderr gets no carriage-return bar (unreadable there) but one INFO line
every LOG_EVERY clips and at the last: clips done, elapsed time and the estimated time left.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Iterator

from tqdm.auto import tqdm

log = logging.getLogger(__name__)
LOG_EVERY = 10  # clips between log lines without a terminal


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"


def clip_progress(total: int, enabled: bool = True, every: int = LOG_EVERY) -> Iterator[int]:
    """range(total), reporting each index as done when the next is asked for."""
    if not enabled:
        yield from range(total)
    elif sys.stderr.isatty():
        yield from tqdm(range(total), desc="clips", unit="clip")
    else:
        start = time.monotonic()
        for index in range(total):
            yield index
            done = index + 1
            if done % every == 0 or done == total:
                elapsed = time.monotonic() - start
                log.info("clip %d/%d done, %s elapsed, ETA %s", done, total, _clock(elapsed),
                         _clock(elapsed / done * (total - done)))
