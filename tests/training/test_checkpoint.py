"""Checkpoint bookkeeping (COMPLETE marker, `latest` pointer, pruning) with a stand-in engine."""
from __future__ import annotations

from pathlib import Path

import pytest

from training import checkpoint
from training.checkpoint import COMPLETE, latest_tag


class FolderEngine:
    """What checkpoint.save needs from a DeepSpeed engine: a folder per tag, rank 0 of one process."""

    global_rank = 0

    def save_checkpoint(self, save_dir: str, tag: str, client_state: dict, save_latest: bool) -> None:
        folder = Path(save_dir) / tag
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "state.txt").write_text(str(client_state["step"]))


def _old_run(ckpt: Path, steps: list[int]) -> None:
    for step in steps:
        folder = ckpt / checkpoint.tag_for(step)
        folder.mkdir(parents=True)
        (folder / COMPLETE).write_text(str(step))
    (ckpt / "latest").write_text(checkpoint.tag_for(max(steps)))


def test_pruning_keeps_the_checkpoint_just_written_when_an_older_run_went_further(tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoints"
    _old_run(ckpt, [8, 10])
    tag = checkpoint.save(FolderEngine(), ckpt, 2, {}, {}, keep_last=2)
    assert (ckpt / tag / COMPLETE).exists() and (ckpt / tag / "state.txt").read_text() == "2"
    assert latest_tag(ckpt) == tag == "step-0000002"
    assert sorted(p.name for p in ckpt.glob("step-*")) == ["step-0000002"]  # the superseded run's are gone
    checkpoint.save(FolderEngine(), ckpt, 4, {}, {}, keep_last=2)
    checkpoint.save(FolderEngine(), ckpt, 6, {}, {}, keep_last=2)
    assert sorted(p.name for p in ckpt.glob("step-*")) == ["step-0000004", "step-0000006"]
    assert latest_tag(ckpt) == "step-0000006"


def test_a_rewritten_step_never_keeps_the_old_complete_marker(tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoints"
    _old_run(ckpt, [2])
    (ckpt / "step-0000002" / "stale.txt").write_text("from the earlier run")

    class Crashing(FolderEngine):
        def save_checkpoint(self, save_dir: str, tag: str, client_state: dict, save_latest: bool) -> None:
            (Path(save_dir) / tag).mkdir(parents=True, exist_ok=True)
            raise RuntimeError("killed while saving")

    with pytest.raises(RuntimeError, match="killed"):
        checkpoint.save(Crashing(), ckpt, 2, {}, {}, keep_last=2)
    assert not (ckpt / "step-0000002" / COMPLETE).exists()  # a half-written folder is never picked
    assert latest_tag(ckpt) is None
