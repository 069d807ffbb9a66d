from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds

from curation.config import ShardsConfig
from curation.manifest import ManifestRow, finalize, finished_sources, read_part, source_row, write_part
from curation.shards import SourceShardWriter


def sample(key: str) -> dict:
    return {"__key__": key, "mp4": b"v" * 100, "json": b"{}"}


def test_shards_roll_over_and_appear_only_when_closed(tmp_path: Path) -> None:
    writer = SourceShardWriter(tmp_path, "src1", ShardsConfig(max_samples=2))
    names = [writer.write(sample(f"src1_{i}")) for i in range(5)]
    assert names == ["src1-0000.tar", "src1-0000.tar", "src1-0001.tar", "src1-0001.tar", "src1-0002.tar"]
    assert sorted(p.name for p in tmp_path.glob("*.tar")) == ["src1-0000.tar", "src1-0001.tar"]  # last still open
    assert writer.close() == ["src1-0000.tar", "src1-0001.tar", "src1-0002.tar"]
    keys = [s["__key__"] for s in wds.WebDataset(str(tmp_path / "src1-{0000..0002}.tar"), shardshuffle=False)]
    assert keys == [f"src1_{i}" for i in range(5)]
    assert not list(tmp_path.glob(".*tmp"))


def test_abort_leaves_nothing_and_a_new_attempt_clears_stale_shards(tmp_path: Path) -> None:
    writer = SourceShardWriter(tmp_path, "src1", ShardsConfig(max_samples=1))
    writer.write(sample("a"))
    writer.write(sample("b"))
    writer.abort()
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "src1-0007.tar").write_bytes(b"stale")
    (tmp_path / "other-0000.tar").write_bytes(b"keep")
    SourceShardWriter(tmp_path, "src1", ShardsConfig())
    assert [p.name for p in tmp_path.iterdir()] == ["other-0000.tar"]


def test_parts_mark_finished_sources_and_finalize_writes_outputs(tmp_path: Path) -> None:
    ok = [ManifestRow(source="a.mp4", source_id="a", status="accepted", clip_id="a_1", start_s=0.0, end_s=3.6,
                      shard="a-0000.tar", source_duration_s=7200.0, face_px=200.0)]
    bad = [source_row("b.mp4", "b", "download_failed", "HTTP 503")]
    write_part(tmp_path, "a", ok)
    write_part(tmp_path, "b", bad)
    assert finished_sources(tmp_path) == {"a", "b"}
    assert finished_sources(tmp_path, retry_failed=True) == {"a"}
    assert read_part(tmp_path, "a") == ok
    summary = finalize(tmp_path, ok + bad, wall_s=1.5)
    assert summary["by_status"] == {"accepted": 1, "failed": 1}
    assert summary["by_reason"] == {"download_failed": 1}
    assert summary["hours_in"] == pytest.approx(2.0) and summary["hours_out"] == pytest.approx(0.001)
    table = pq.read_table(tmp_path / "manifest.parquet")
    assert table.column("status").to_pylist() == ["accepted", "failed"]
    assert table.column("clip_id").to_pylist() == ["a_1", None]
    assert (tmp_path / "funnel.png").stat().st_size > 1000
