"""What a training run tells its reader: a tqdm bar on a terminal, log lines where there is none.

Under nohup, `ray job`, Slurm or any redirected output, rank 0 logs a line every run.progress_every steps
or run.progress_seconds seconds (whichever comes first) with step/total, loss, learning rate, samples/s
and the ETA; other ranks stay quiet. The closing summary names the steps, the time and the outputs.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Optional

from tqdm import tqdm

log = logging.getLogger("training")


def duration(seconds: float) -> str:
    """3725 -> '1h02m05s', 65 -> '1m05s', 4.2 -> '4s'."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """Rank 0's account of the steps of one process's run (from `initial`, the resumed step, to `total`)."""

    def __init__(self, name: str, total: int, initial: int, every_steps: int, every_seconds: float,
                 enabled: bool, terminal: Optional[bool] = None):
        self.name, self.total, self.initial = name, total, initial
        self.every_steps, self.every_seconds, self.enabled = every_steps, every_seconds, enabled
        terminal = sys.stderr.isatty() if terminal is None else terminal
        self.bar = tqdm(total=total, initial=initial, desc=name) if enabled and terminal else None
        self.started = self.last_line = time.monotonic()
        self.samples = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def step(self, step: int, loss: float, lr: float, samples: int) -> None:
        """After optimizer step `step`, which consumed `samples` samples across all ranks."""
        self.samples += samples
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}")
            return
        now = time.monotonic()
        due = step % self.every_steps == 0 or now - self.last_line >= self.every_seconds
        if not (due or step == self.total or step == self.initial + 1):
            return
        self.last_line = now
        elapsed, done = self.elapsed(), step - self.initial
        eta = elapsed / done * (self.total - step)
        log.info("%s step %d/%d (%.0f%%) loss %.4f lr %.3g %.2f samples/s elapsed %s ETA %s", self.name, step,
                 self.total, 100 * step / self.total, loss, lr, self.samples / max(elapsed, 1e-9), duration(elapsed),
                 duration(eta))

    def samples_per_second(self) -> float:
        return self.samples / max(self.elapsed(), 1e-9)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
