"""Atomic, resumable DeepSpeed checkpoints.

DeepSpeed writes model/optimizer/scheduler shards into `checkpoints/step-NNNNNNN/`. Only after
every rank has finished does rank 0 write `COMPLETE` into that folder and then replace the
`latest` pointer atomically, so a run killed mid-save resumes from the previous checkpoint and a
partial folder is never picked. Per-rank state (RNG streams, data readers) is gathered into the
checkpoint's client state, so every rank gets its own back.
"""
from __future__ import annotations

import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

COMPLETE = "COMPLETE"
TAG = re.compile(r"^step-(\d+)$")


def tag_for(step: int) -> str:
    return f"step-{step:07d}"


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
             "generator": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _gather(obj: Any) -> list[Any]:
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def complete_tags(ckpt_dir: Path) -> list[str]:
    tags = [p.name for p in ckpt_dir.glob("step-*") if TAG.match(p.name) and (p / COMPLETE).exists()]
    return sorted(tags, key=step_of)


def latest_tag(ckpt_dir: Path) -> Optional[str]:
    """The `latest` pointer if it names a complete checkpoint, else the newest complete one."""
    pointer = ckpt_dir / "latest"
    tags = complete_tags(ckpt_dir)
    if pointer.exists():
        tag = pointer.read_text().strip()
        if tag in tags:
            return tag
        log.warning("ignoring `latest` -> %s: that checkpoint is incomplete", tag)
    return tags[-1] if tags else None


def save(engine: Any, ckpt_dir: Path, step: int, per_rank: dict[str, Any], shared: dict[str, Any], keep_last: int) -> str:
    """Collective: every rank calls it. Returns the tag written."""
    tag = tag_for(step)
    if engine.global_rank == 0 and (ckpt_dir / tag).exists():
        # A folder of this step from a superseded run: its COMPLETE marker must not vouch for a half-written save.
        shutil.rmtree(ckpt_dir / tag)
    _barrier()
    client_state = dict(shared, step=step, per_rank=_gather(per_rank))
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state=client_state, save_latest=False)
    _barrier()
    if engine.global_rank == 0:
        (ckpt_dir / tag / COMPLETE).write_text(str(step))
        tmp = ckpt_dir / f".latest.{os.getpid()}.tmp"
        tmp.write_text(tag)
        os.replace(tmp, ckpt_dir / "latest")
        _prune(ckpt_dir, step, keep_last)
    _barrier()
    return tag


def step_of(tag: str) -> int:
    """The step of a checkpoint tag (`step-000120` -> 120)."""
    return int(TAG.match(tag).group(1))


def _prune(ckpt_dir: Path, step: int, keep_last: int) -> None:
    """Keep the checkpoint just written at `step` and the keep_last - 1 complete ones before it.

    Complete checkpoints beyond `step` belong to a run this one superseded (the `latest` pointer no
    longer names them): they are deleted, never counted as newer than the one just written.
    """
    tags = complete_tags(ckpt_dir)
    older = [t for t in tags if step_of(t) < step]
    superseded = [t for t in tags if step_of(t) > step]
    if superseded:
        log.warning("deleting checkpoints of a superseded run beyond step %d: %s", step, ", ".join(superseded))
    for old in older[: max(0, len(older) - (keep_last - 1))] + superseded:
        shutil.rmtree(ckpt_dir / old, ignore_errors=True)
    for partial in ckpt_dir.glob("step-*"):  # left by a run killed while saving
        if TAG.match(partial.name) and not (partial / COMPLETE).exists() and step_of(partial.name) != step:
            shutil.rmtree(partial, ignore_errors=True)


def load(engine: Any, ckpt_dir: Path) -> Optional[dict[str, Any]]:
    """Restore the newest complete checkpoint; returns its client state with this rank's `per_rank`."""
    tag = latest_tag(ckpt_dir) if ckpt_dir.exists() else None
    if tag is None:
        return None
    _, client_state = engine.load_checkpoint(str(ckpt_dir), tag=tag)
    if client_state is None:
        raise RuntimeError(f"checkpoint {ckpt_dir / tag} could not be loaded")
    ranks = client_state["per_rank"]
    if len(ranks) != engine.world_size:
        raise RuntimeError(f"checkpoint {tag} was written by {len(ranks)} ranks, this run has {engine.world_size}: "
                           "exact resume needs the same world size")
    client_state["per_rank"] = ranks[engine.global_rank]
    log.info("resumed from %s (step %d)", ckpt_dir / tag, client_state["step"])
    return client_state
