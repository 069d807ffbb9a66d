"""The shard stream: disjoint readers, exact resume at a cost that does not grow with the step, windows of
shards shuffled together, bad samples skipped and bounded."""
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds

from foundation import schema

from training.config import DataConfig
from training import data
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


def take(root: Path, n: int, workers: int, state=None, rank=0, world=1, cfg=DataConfig(shuffle_buffer=4), decoder=decode):
    stream = ShardStream([str(root / "*.tar")], decoder, cfg, batch_size=2, seed=7, rank=rank, world_size=world)
    batches = ResumableBatches.from_state(stream, workers, state)
    got = [next(batches) for _ in range(n)]
    return [k for b in got for k in b["key"]], [v for b in got for v in b["value"].tolist()], batches


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_continues_exactly_where_it_stopped(shards: Path, workers: int) -> None:
    keys, values, _ = take(shards, 12, workers)
    keys1, values1, first = take(shards, 5, workers)
    keys2, values2, _ = take(shards, 7, workers, first.state_dict())
    assert keys1 + keys2 == keys and values1 + values2 == values


@pytest.mark.parametrize("window", [1, 2])
def test_resume_is_exact_with_windows_of_shards(shards: Path, window: int) -> None:
    cfg = DataConfig(shuffle_buffer=5, shuffle_shards=window)
    keys, values, _ = take(shards, 25, 0, cfg=cfg)
    keys1, values1, first = take(shards, 13, 0, cfg=cfg)
    keys2, values2, _ = take(shards, 12, 0, first.state_dict(), cfg=cfg)
    assert keys1 + keys2 == keys and values1 + values2 == values


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The key of every raw sample the stream reads from a shard (DataLoader workers off: same process)."""
    seen: list[str] = []
    original = data.shard_samples

    def counted(url: str, strict: bool = False):
        for sample in original(url, strict):
            seen.append(sample["__key__"])
            yield sample

    monkeypatch.setattr(data, "shard_samples", counted)
    return seen


@pytest.mark.parametrize("window", [1, 2])
def test_resume_reads_at_most_one_window_whatever_the_step(shards: Path, reads: list[str], window: int) -> None:
    # 3 shards of 7 samples, batches of 2: step 400 is in the 39th epoch, 800 samples from the start.
    cfg = DataConfig(shuffle_buffer=4, shuffle_shards=window)
    per_window, cost = 7 * window, {}
    for steps in (3, 40, 400):
        _, _, first = take(shards, steps, 0, cfg=cfg)
        assert len(reads) >= 2 * steps  # the uninterrupted stream read every sample it used
        reads.clear()
        take(shards, 1, 0, first.state_dict(), cfg=cfg)
        cost[steps] = len(reads)
        reads.clear()
    # At most: the replay of the current window, then what the next batch costs any reader: its 2 samples
    # (3 if one is the bad one) through the buffer (4), possibly from the next window.
    assert all(n <= per_window + 4 + 3 for n in cost.values()), cost


def test_a_window_shuffles_exactly_its_shards_together(shards: Path) -> None:
    # A buffer as large as the window: each window's 14 samples come out as one permutation of both shards.
    keys, _, _ = take(shards, 7, 0, cfg=DataConfig(shuffle_buffer=14, shuffle_shards=2), decoder=lambda raw, rng: {"value": torch.tensor(0)})
    first = keys[:14]
    sources = {k.split("_")[0] for k in first}
    assert len(sources) == 2 and sorted(first) == sorted(f"{s}_{i}" for s in sources for i in range(7))
    assert first[:7] != sorted(first[:7])  # shuffled, not in stored order


def test_a_checkpoint_of_the_replaying_stream_is_refused_in_one_line(shards: Path) -> None:
    old = {"next_worker": 0, "readers": {"0": {"position": 12, "seen": 12, "bad": 0}}}
    with pytest.raises(ValueError, match="counts raw samples from the start"):
        take(shards, 1, 0, old)


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


def test_a_mapped_local_shard_reads_as_the_same_shard_streamed(tmp_path: Path) -> None:
    arrays = {f"k{i}": np.arange(i * 1000, dtype=np.float16).reshape(-1, 10) for i in range(1, 4)}
    with wds.TarWriter(str(tmp_path / "a.tar")) as writer:
        for key, array in arrays.items():
            writer.write({"__key__": key, "rows.npy": array, "json": {"key": key}})
    local = list(data.shard_samples(str(tmp_path / "a.tar")))
    streamed = list(data.shard_samples(f"pipe:cat {tmp_path / 'a.tar'}"))
    assert [s["__key__"] for s in local] == [s["__key__"] for s in streamed] == list(arrays)
    for a, b in zip(local, streamed):
        assert isinstance(a["rows.npy"], memoryview) and isinstance(b["rows.npy"], bytes)  # a view, not a copy
        assert bytes(a["rows.npy"]) == b["rows.npy"] and a["json"] == b["json"]
        rows = schema.npy_view(a["rows.npy"])
        assert np.array_equal(rows, arrays[a["__key__"]]) and not rows.flags.writeable


def test_a_truncated_shard_yields_what_it_holds_then_stops(tmp_path: Path) -> None:
    with wds.TarWriter(str(tmp_path / "a.tar")) as writer:
        for i in range(3):
            writer.write({"__key__": f"k{i}", "rows.npy": np.zeros((100, 10), np.float16)})
    raw = (tmp_path / "a.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(raw[: len(raw) // 2])
    keys = [s["__key__"] for s in data.shard_samples(str(tmp_path / "cut.tar"))]
    assert keys and keys == ["k0", "k1", "k2"][: len(keys)] and len(keys) < 3
    with pytest.raises(Exception):
        list(data.shard_samples(str(tmp_path / "cut.tar"), strict=True))
