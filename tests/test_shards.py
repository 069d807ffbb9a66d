"""The commit protocol on a local folder: attempt-unique shards, parts named by config, settling."""
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds

from curation.config import CurationConfig, ShardsConfig
from curation.duplicates import find_duplicates
from curation.manifest import ManifestRow, source_row
from curation.manifest_parts import PartInfo, list_parts, read_parts, write_part
from curation.run_output import ConfigChanged, plan_run, finalize_output
from curation.shards import SourceShardWriter, shard_source
from curation.sources import Source
from curation.timing import collect, stage
from foundation.config import load_config
from foundation.storage import Location

SID_A, SID_B = "a" * 16, "b" * 16


def sample(key: str) -> dict:
    return {"__key__": key, "mp4": b"v" * 100, "json": b"{}"}


def source(sid: str) -> Source:
    return Source(raw=f"/videos/{sid[:1]}.mp4", normalized=f"/videos/{sid[:1]}.mp4", source_id=sid, kind="local")


def test_shards_roll_over_and_appear_only_when_closed(tmp_path: Path) -> None:
    writer = SourceShardWriter(tmp_path, "src1", ShardsConfig(max_samples=2))
    names = [writer.write(sample(f"src1_{i}")) for i in range(5)]
    prefix = f"src1-{writer.attempt}"
    assert names == [f"{prefix}-0000.tar"] * 2 + [f"{prefix}-0001.tar"] * 2 + [f"{prefix}-0002.tar"]
    shards = tmp_path / "shards"
    assert sorted(p.name for p in shards.glob("*.tar")) == names[1:4:2]  # the last one is still open
    assert writer.close() == sorted(set(names))
    keys = [s["__key__"] for s in wds.WebDataset(str(shards / f"{prefix}-{{0000..0002}}.tar"), shardshuffle=False)]
    assert keys == [f"src1_{i}" for i in range(5)]
    assert not list(shards.glob(".*tmp")) and shard_source(names[0]) == "src1"


def test_two_attempts_of_a_source_never_share_a_shard_and_abort_removes_only_its_own(tmp_path: Path) -> None:
    first, second = (SourceShardWriter(tmp_path, "src1", ShardsConfig(max_samples=1)) for _ in range(2))
    kept = [first.write(sample("a")), first.write(sample("b"))]
    first.close()
    second.write(sample("a"))
    second.write(sample("b"))
    second.abort()
    assert first.attempt != second.attempt
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == sorted(kept)


def test_parts_are_named_by_config_and_carry_it(tmp_path: Path) -> None:
    loc = Location(tmp_path)
    cfg = CurationConfig()
    info = PartInfo.of(cfg, content_keys=["sha256:x"], stage_seconds={"download": 1.5})
    rows = [ManifestRow(source="a.mp4", source_id=SID_A, status="accepted", clip_id="a_1", start_s=0.0, end_s=3.6,
                        shard="x.tar", source_duration_s=7200.0, face_px=200.0)]
    name = write_part(loc, SID_A, rows, info)
    assert list_parts(loc) == {SID_A: {info.fingerprint: name}}
    assert read_parts(loc, [name]) == {name: (rows, info)}
    assert info.result_keys["quality.min_face_px"] == 96 and "run.max_in_flight" not in info.result_keys


def test_a_changed_result_key_stops_the_plan_naming_it_but_run_keys_change_freely(tmp_path: Path) -> None:
    loc = Location(tmp_path)
    old = CurationConfig()
    write_part(loc, SID_A, [source_row("a.mp4", SID_A, "no_face")], PartInfo.of(old))
    sources = [source(SID_A), source(SID_B)]
    same = load_config(CurationConfig, overrides=["run.max_in_flight=3", "download.sleep_interval_s=2"])
    plan = plan_run(loc, sources, same)
    assert [s.source_id for s in plan.todo] == [SID_B] and plan.finished == 1
    changed = load_config(CurationConfig, overrides=["quality.min_face_px=128", "clips.max_s=8"])
    with pytest.raises(ConfigChanged, match=r"1 source\(s\) .*changed: clips.max_s, quality.min_face_px.*--reprocess"):
        plan_run(loc, sources, changed)
    plan = plan_run(loc, sources, changed, reprocess=True)
    assert [s.source_id for s in plan.todo] == [SID_A, SID_B] and plan.reprocess == 1


def test_retry_failed_redoes_failed_sources_only(tmp_path: Path) -> None:
    loc, cfg = Location(tmp_path), CurationConfig()
    write_part(loc, SID_A, [source_row("a.mp4", SID_A, "no_face")], PartInfo.of(cfg))
    write_part(loc, SID_B, [source_row("b.mp4", SID_B, "download_failed", "HTTP 503")], PartInfo.of(cfg))
    sources = [source(SID_A), source(SID_B)]
    assert plan_run(loc, sources, cfg).todo == []
    assert [s.source_id for s in plan_run(loc, sources, cfg, retry_failed=True).todo] == [SID_B]


def test_settle_keeps_the_committed_attempt_and_deletes_orphans_and_superseded_parts(tmp_path: Path) -> None:
    loc, cfg = Location(tmp_path), CurationConfig()
    losing = SourceShardWriter(loc, SID_A, ShardsConfig())  # an attempt that never committed (its node died)
    losing.write(sample(f"{SID_A}_0"))
    losing.close()
    winning = SourceShardWriter(loc, SID_A, ShardsConfig())
    shard = winning.write(sample(f"{SID_A}_0"))
    winning.close()
    rows = [ManifestRow(source="a.mp4", source_id=SID_A, status="accepted", clip_id=f"{SID_A}_0", start_s=0.0,
                        end_s=3.0, shard=shard, source_duration_s=10.0)]
    old_cfg = load_config(CurationConfig, overrides=["quality.min_face_px=50"])
    write_part(loc, SID_A, [source_row("a.mp4", SID_A, "no_face")], PartInfo.of(old_cfg))  # before --reprocess
    write_part(loc, SID_A, rows, PartInfo.of(cfg, stage_seconds={"download": 1.0, "encode": 2.0}))
    (tmp_path / "shards" / f"{'c' * 16}-0123abcd-0000.tar").write_bytes(b"another list's source: left alone")
    summary = finalize_output(loc, [source(SID_A)], cfg, [source_row("ftp://x", "f" * 16, "unsupported_source")], 1.0)
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == sorted([shard, f"{'c' * 16}-0123abcd-0000.tar"])
    assert list(list_parts(loc)[SID_A]) == [PartInfo.of(cfg).fingerprint]
    assert summary["by_status"] == {"accepted": 1, "rejected": 1}
    assert summary["stage_seconds"] == {"download": 1.0, "encode": 2.0}
    assert summary["config_fingerprint"] == PartInfo.of(cfg).fingerprint
    table = pq.read_table(tmp_path / "manifest.parquet")
    assert table.column("clip_id").to_pylist() == [f"{SID_A}_0", None]
    assert table.schema.metadata[b"config_fingerprint"].decode() == summary["config_fingerprint"]
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert (tmp_path / "funnel.png").stat().st_size > 1000


def test_duplicates_keep_the_first_listed_copy_whatever_the_finishing_order() -> None:
    order = ["s1", "s2", "s3", "s4", "s5"]
    keys = {"s4": ["sha256:x", "video:youtube:abc"], "s2": ["sha256:y", "video:youtube:abc"], "s5": ["sha256:x"],
            "s3": ["sha256:z"], "s1": []}
    assert find_duplicates(order, keys) == {"s4": "s2", "s5": "s2"}  # s5 shares bytes with s4, which is s2's video
    assert find_duplicates(order, dict(reversed(list(keys.items())))) == {"s4": "s2", "s5": "s2"}
    assert find_duplicates(["s5", "s4", "s2"], keys) == {"s4": "s5", "s2": "s5"}


def test_settle_records_later_copies_as_duplicates_naming_the_kept_source(tmp_path: Path) -> None:
    loc, cfg = Location(tmp_path), CurationConfig()
    first, second = source(SID_A), source(SID_B)
    for src in (second, first):  # the later-listed copy finished first
        writer = SourceShardWriter(loc, src.source_id, ShardsConfig())
        shard = writer.write(sample(f"{src.source_id}_0"))
        writer.close()
        rows = [ManifestRow(source=src.raw, source_id=src.source_id, status="accepted", clip_id=f"{src.source_id}_0",
                            start_s=0.0, end_s=3.0, shard=shard, source_duration_s=10.0)]
        write_part(loc, src.source_id, rows, PartInfo.of(cfg, content_keys=["sha256:same"]))
    finalize_output(loc, [first, second], cfg, [], 1.0)
    rows = pq.read_table(tmp_path / "manifest.parquet").to_pylist()
    by_source = {r["source_id"]: r for r in rows}
    assert by_source[SID_A]["status"] == "accepted"
    assert by_source[SID_B]["reason"] == "duplicate" and by_source[SID_B]["detail"] == f"the same media bytes as {first.raw}"
    assert [p.name.split("-")[0] for p in (tmp_path / "shards").iterdir()] == [SID_A]
    assert plan_run(loc, [first, second], cfg).todo == []  # the recorded duplicate counts as done


def test_stage_times_nest_exclusively(monkeypatch) -> None:
    ticks = iter([0.0, 1.0, 3.0, 7.0, 8.0])  # collect, enter outer, enter inner, leave inner, leave outer
    monkeypatch.setattr("curation.timing.time.perf_counter", lambda: next(ticks))
    with collect() as seconds:
        with stage("outer"):
            with stage("inner"):
                pass
    assert seconds == {"outer": 2.0 + 1.0, "inner": 4.0}
    with stage("outside a collection"):  # costs nothing, records nothing
        pass
