"""The shard stream: disjoint readers, exact resume, bad samples skipped and bounded."""
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds

from training.config import DataConfig
from training.data import BadSample, ResumableBatches, ShardStream, expand_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shards")
    for s in range(3):
        with wds.TarWriter(str(root / f"s{s}.tar")) as writer:
            for i in range(7):
                writer.write({"__key__": f"k{s}_{i}", "txt": f"{s}-{i}".encode()})
    return root


def decode(raw: dict, rng: np.random.Generator) -> dict:
    if raw["__key__"] == "k1_3":
        raise BadSample("unusable on purpose")
    return {"value": torch.tensor(int(rng.integers(0, 10**6)))}


def take(root: Path, n: int, workers: int, state=None, rank=0, world=1, cfg=DataConfig(shuffle_buffer=4)):
    stream = ShardStream([str(root / "*.tar")], decode, cfg, batch_size=2, seed=7, rank=rank, world_size=world)
    batches = ResumableBatches.from_state(stream, workers, state)
    got = [next(batches) for _ in range(n)]
    return [k for b in got for k in b["key"]], [v for b in got for v in b["value"].tolist()], batches


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_continues_exactly_where_it_stopped(shards: Path, workers: int) -> None:
    keys, values, _ = take(shards, 12, workers)
    keys1, values1, first = take(shards, 5, workers)
    keys2, values2, _ = take(shards, 7, workers, first.state_dict())
    assert keys1 + keys2 == keys and values1 + values2 == values


def test_ranks_read_disjoint_samples(shards: Path) -> None:
    seen = [set(take(shards, 4, 0, rank=r, world=2)[0]) for r in range(2)]
    assert seen[0] and seen[1] and not seen[0] & seen[1]


def test_bad_samples_are_skipped_and_counted(shards: Path) -> None:
    keys, _, batches = take(shards, 15, 0)
    assert "k1_3" not in keys
    assert batches.totals().bad >= 1


def test_too_many_bad_samples_stop_with_a_clear_error(shards: Path) -> None:
    cfg = DataConfig(shuffle_buffer=4, max_bad_fraction=0.01, bad_check_after=1)
    with pytest.raises(RuntimeError, match="max_bad_fraction"):
        take(shards, 30, 0, cfg=cfg)


def test_shard_patterns_expand(shards: Path) -> None:
    assert expand_shards([str(shards / "s{0..1}.tar"), str(shards / "s2.tar")]) == [
        str(shards / f"s{i}.tar") for i in range(3)
    ]


def test_a_reader_without_samples_fails_instead_of_hanging(tmp_path: Path) -> None:
    with wds.TarWriter(str(tmp_path / "one.tar")) as writer:
        writer.write({"__key__": "only", "txt": b"x"})
    with pytest.raises(ValueError, match="gets no sample"):
        take(tmp_path, 1, 0, rank=1, world=2)
