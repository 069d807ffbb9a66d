"""Seconds spent per step of one source, for the per-source part and summary.json's `stage_seconds`.

`stage(name)` blocks nest exclusively: time inside an inner block counts for the inner step only,
so the steps of a source add up to its total. Outside `collect()` the blocks cost nothing.
"""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, Optional


class _Clock:
    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.stack: list[str] = []
        self.since = time.perf_counter()

    def switch(self, to: Optional[str]) -> None:
        """Charge the time since the last switch to the running step, then run `to` (None: pop)."""
        now = time.perf_counter()
        if self.stack:
            self.seconds[self.stack[-1]] += now - self.since
        self.since = now
        if to is None:
            self.stack.pop()
        else:
            self.stack.append(to)


_clock: ContextVar[Optional[_Clock]] = ContextVar("curation_stage_clock", default=None)


@contextmanager
def collect() -> Iterator[dict[str, float]]:
    """Collect the steps timed inside; the yielded dict is filled when the block ends."""
    clock = _Clock()
    token = _clock.set(clock)
    result: dict[str, float] = {}
    try:
        yield result
    finally:
        _clock.reset(token)
        result.update({name: round(seconds, 3) for name, seconds in clock.seconds.items()})


@contextmanager
def stage(name: str) -> Iterator[None]:
    clock = _clock.get()
    if clock is None:
        yield
        return
    clock.switch(name)
    try:
        yield
    finally:
        clock.switch(None)
