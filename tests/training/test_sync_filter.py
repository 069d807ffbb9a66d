"""data.unverified_sync: clips whose lip sync curation could not verify are counted, and left out
only when asked; leaving them out is not a bad sample, and leaving out everything is an error."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds

from foundation import schema
from training.config import DataConfig
from training.data import BadSample, ResumableBatches, ShardStream, SkippedSample
from training.samples import SyncFilter

VERIFIED = {f"k{i}" for i in range(0, 12, 3)}  # 4 of 12


def meta(key: str, verified: bool) -> bytes:
    return schema.ClipMeta(clip_id=key, source="s.mp4", source_id="s", start_s=0.0, end_s=1.0, num_frames=25, fps=25,
                           sample_rate=16000, size=64, crop_boxes=[], metrics={}, sync_backend="syncnet",
                           sync_verified=verified).to_json()


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sync_shards")
    for s in range(2):
        with wds.TarWriter(str(root / f"s{s}.tar")) as writer:
            for i in range(s * 6, s * 6 + 6):
                writer.write({"__key__": f"k{i}", "json": meta(f"k{i}", f"k{i}" in VERIFIED)})
    return root


def decode(raw: dict, rng: np.random.Generator) -> dict:
    return {"value": torch.tensor(1)}


def keys_seen(shards: Path, mode: str, n: int) -> tuple[list[str], ResumableBatches]:
    cfg = DataConfig(shuffle_buffer=4, unverified_sync=mode)
    stream = ShardStream([str(shards / "*.tar")], SyncFilter(decode, cfg), cfg, batch_size=2, seed=3)
    batches = ResumableBatches.from_state(stream, 0, None)
    return [k for _ in range(n) for k in next(batches)["key"]], batches


def test_include_keeps_every_clip_and_logs_the_count(shards, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="training.samples"):
        keys, batches = keys_seen(shards, "include", 12)  # 24 samples: two passes
    assert set(keys) == {f"k{i}" for i in range(12)}
    assert "unverified lip sync:" in caplog.text and "data.unverified_sync=include" in caplog.text
    assert batches.totals().bad == 0


def test_exclude_leaves_unverified_clips_out_without_counting_them_bad(shards) -> None:
    keys, batches = keys_seen(shards, "exclude", 6)  # 12 samples: three passes over the 4 verified
    assert set(keys) == VERIFIED and len(keys) == 12
    assert batches.totals().bad == 0


def test_the_filter_reads_only_the_metadata_and_leaves_broken_samples_to_the_decoder() -> None:
    cfg = DataConfig(unverified_sync="exclude", bad_check_after=3)
    broken = SyncFilter(lambda raw, rng: (_ for _ in ()).throw(BadSample("no json")), cfg)
    with pytest.raises(BadSample, match="no json"):
        broken({"__key__": "x"}, np.random.default_rng(0))
    only_unverified = SyncFilter(decode, cfg)
    for i in range(2):
        with pytest.raises(SkippedSample):
            only_unverified({"__key__": f"u{i}", "json": meta(f"u{i}", False)}, np.random.default_rng(0))
    with pytest.raises(RuntimeError, match="all have unverified lip sync"):
        only_unverified({"__key__": "u2", "json": meta("u2", False)}, np.random.default_rng(0))
