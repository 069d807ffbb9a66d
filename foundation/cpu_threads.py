"""How many threads torch runs on the CPU, for training and generation alike.

torch's default (one intra-op thread per physical core) suits one process alone on a machine. It
goes badly wrong when processes share the cores - the ranks of a multi-process run, or other jobs:
OpenMP threads wait on each other, and a tiny-model training step was measured about 15x slower
than with one thread. `auto` therefore gives each process of a node its share of the CPUs this
process may run on (its affinity mask, which container CPU limits narrow), and never more than
torch's own default; OMP_NUM_THREADS, when set, wins over `auto`.
"""
from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger(__name__)


def auto_threads(processes_per_node: int) -> int:
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return torch.get_num_threads()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(torch.get_num_threads(), cpus // max(1, processes_per_node)))


def set_cpu_threads(requested: int, processes_per_node: int | None = None) -> int:
    """Set torch's intra-op threads: `requested` if > 0, else `auto_threads` (see module docstring).

    processes_per_node defaults to the launcher's LOCAL_WORLD_SIZE (torchrun, deepspeed), else 1.
    """
    if requested < 0:
        raise ValueError(f"thread count must be >= 0 (0 = auto), got {requested}")
    if processes_per_node is None:
        processes_per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    threads = requested or auto_threads(processes_per_node)
    torch.set_num_threads(threads)
    log.info("torch uses %d CPU thread(s)%s", threads, "" if requested else " (auto)")
    return threads
