"""What the benchmark scripts share: wall + CPU timing, exclusive per-stage clocks, the machine they ran
on, the printed table and the JSON + PNG written next to it.

CPU seconds count every thread of this process plus the child processes it waited for (ffmpeg), so a
multi-threaded step and a single-threaded one compare by the work they cost, not only by the clock.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import platform
import re
import resource
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def cpu_seconds() -> float:
    """User + system CPU of this process (all threads) and of its waited-for children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass
class Measured:
    wall_s: float = 0.0
    cpu_s: float = 0.0


@contextlib.contextmanager
def measure() -> Iterator[Measured]:
    """`with measure() as m: ...` fills m.wall_s and m.cpu_s when the block ends."""
    out = Measured()
    wall, cpu = time.perf_counter(), cpu_seconds()
    try:
        yield out
    finally:
        out.wall_s, out.cpu_s = time.perf_counter() - wall, cpu_seconds() - cpu


class StageClock:
    """Exclusive wall seconds per named stage: time spent in a stage nested inside another is charged
    to the inner one only. `sync` (e.g. torch.cuda.synchronize) runs at every switch so that
    asynchronous GPU work lands in the stage that queued it. A stage named in `whole` keeps the time
    of the stages nested in it (a step that calls the same helpers as others, timed as one)."""

    def __init__(self, sync: Optional[Callable[[], None]] = None, whole: Sequence[str] = ()) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[str] = []
        self._since = 0.0
        self._sync = sync
        self._whole = frozenset(whole)

    def _switch(self) -> None:
        if self._sync is not None:
            self._sync()
        now = time.perf_counter()
        if self._stack:
            self.seconds[self._stack[-1]] += now - self._since
        self._since = now

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self._stack and self._stack[-1] in self._whole:
            yield
            return
        self._switch()
        self._stack.append(name)
        try:
            yield
        finally:
            self._switch()
            self._stack.pop()

    def wrap(self, name: str, fn: Callable) -> Callable:
        """`fn` timed as stage `name`; for a generator function only the time inside its own steps counts."""
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def steps(*args: Any, **kwargs: Any) -> Iterator[Any]:
                inner = fn(*args, **kwargs)
                try:
                    while True:
                        with self.stage(name):
                            try:
                                item = next(inner)
                            except StopIteration:
                                return
                        yield item
                finally:
                    with self.stage(name):
                        inner.close()
            return steps

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            with self.stage(name):
                return fn(*args, **kwargs)
        return call

    @contextlib.contextmanager
    def patched(self, targets: dict[str, Sequence[tuple[object, str]]]) -> Iterator["StageClock"]:
        """Time the named attributes (module functions, class methods) as stages while the block runs."""
        with contextlib.ExitStack() as stack:
            for name, places in targets.items():
                for owner, attr in places:
                    original = getattr(owner, attr)
                    stack.callback(setattr, owner, attr, original)
                    setattr(owner, attr, self.wrap(name, original))
            yield self


def status_mb(field: str) -> float:
    """A memory line of /proc/self/status (VmRSS: now, VmHWM: peak) in MiB."""
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    return int(match.group(1)) / 1024 if match else 0.0


def restart_peak_rss() -> float:
    """Start a new peak-RSS window (Linux resets VmHWM on `5` into clear_refs); returns the RSS now."""
    Path("/proc/self/clear_refs").write_text("5")
    return status_mb("VmRSS")


def machine() -> dict[str, Any]:
    """Where the numbers come from: CPU model and cores, GPU if torch sees one, load, library versions."""
    import torch

    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_1_5_15m": [round(x, 2) for x in os.getloadavg()],  # other work on the machine at the end
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return "-" if value is None else str(value)


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain-text table on stdout (the scripts' CLI output)."""
    cells = [list(header)] + [[fmt(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for i, row in enumerate(cells):
        print("  ".join(cell.rjust(w) if i and j else cell.ljust(w) for j, (cell, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def write_results(out_dir: Path, name: str, payload: dict[str, Any], figure: Any) -> tuple[Path, Path]:
    """`<name>.json` (payload + machine + time) and `<name>.png` (the matplotlib figure) in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out_dir / f"{name}.json", out_dir / f"{name}.png"
    document = {"benchmark": name, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), **payload}
    json_path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    figure.savefig(png_path, dpi=90, bbox_inches="tight")
    return json_path, png_path


def new_figure(width: float = 8.0, height: float = 4.0) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def standin_models(folder: Path, wav2vec2: str = "base") -> Path:
    """Random-weight stand-ins of the pretrained bases (`python -m examples.standins`) in `folder`.

    wav2vec2="base" rebuilds the wav2vec2 stand-in at wav2vec2-base size (12 x 768, random weights):
    its compute cost and feature size are those of the real model, which the tiny one would hide.
    The insightface stand-ins stay tiny (their detector never finds a face, so no ArcFace runs).
    """
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from model.presets import get_preset
    from examples.standins import write_standins

    if not (folder / "wav2vec2" / "config.json").is_file():
        write_standins(get_preset("tiny"), folder)
        if wav2vec2 == "base":
            Wav2Vec2Model(Wav2Vec2Config(**get_preset("sd15").wav2vec2)).save_pretrained(folder / "wav2vec2")
    return folder


def annotation_overrides(folder: Path) -> list[str]:
    """Curation `--set` overrides pointing the annotation models at stand-ins from `standin_models`."""
    return [f"annotations.wav2vec2_dir={folder / 'wav2vec2'}",
            f"annotations.insightface_dir={folder / 'insightface' / 'models'}"]
