"""`python -m curation.run` as a user runs it: local Ray, re-runs, and a SIGKILLed driver."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds

from curation_expected import expected

ROOT = Path(__file__).resolve().parents[1]
COPIES = {"odd_extension": "in_sync"}  # fixture variant -> the variant whose exact bytes it holds, listed earlier


def run_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curation.run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, **kwargs)


def test_cli_errors_are_one_line_and_non_zero(tmp_path: Path) -> None:
    missing = run_cli("--source", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o"))
    assert missing.returncode == 2 and "source list not found" in missing.stderr
    listing = tmp_path / "list.txt"
    listing.write_text("a.mp4\n")
    bad_key = run_cli("--source", str(listing), "--set", "quality.min_face=3")
    assert bad_key.returncode == 2 and "unknown config key 'quality.min_face'" in bad_key.stderr
    bad_value = run_cli("--source", str(listing), "--set", "clips.max_s=long")
    assert bad_value.returncode == 2 and "'clips.max_s' expects a number" in bad_value.stderr
    bad_file = tmp_path / "c.yaml"
    bad_file.write_text("faces: {crop_scale: [1, 2]}\n")
    bad_yaml = run_cli("--source", str(listing), "--config", str(bad_file))
    assert bad_yaml.returncode == 2 and "faces.crop_scale" in bad_yaml.stderr
    no_models = run_cli("--source", str(listing), "--set", f"annotations.wav2vec2_dir={tmp_path / 'none'}")
    assert no_models.returncode == 2  # before Ray starts any work
    assert no_models.stderr.strip().splitlines()[-1].startswith("error: config key 'annotations.")


def test_unreadable_lists_and_outputs_exit_2_in_one_line_before_ray(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("# videos\nhttps://example.com/a.mp4\nclip_\xe9t\xe9.mp4\n".encode("latin-1"))
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n\n")
    listing = tmp_path / "list.txt"
    listing.write_text("https://example.com/a.mp4\n")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    cases = [
        (["--source", str(latin1)], "line 3 is not UTF-8 (byte 0xe9 at column 6)"),
        (["--source", str(empty)], "has no entries"),
        (["--source", str(listing), "--out", str(blocker / "out")], f"cannot write to {blocker / 'out'}"),
    ]
    for args, message in cases:
        result = run_cli(*args, "--set", "annotations.enabled=false")
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and lines[-1].startswith("error: ") and message in lines[-1], result.stderr
        assert "Traceback" not in result.stderr and "Started a local Ray instance" not in result.stderr


def test_a_run_where_no_source_gives_a_clip_exits_1_unless_allowed(tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("ftp://example.invalid/a.mp4\nftp://example.invalid/b.mp4\n")
    args = ["--source", str(listing), "--out", str(tmp_path / "out"), "--set", "annotations.enabled=false"]
    failed = run_cli(*args)
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert "curated 2 source(s), 0.0 min of video" in failed.stderr and "rows by reason: unsupported_source 2" in failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no source gave a single candidate clip") and "--allow-empty" in last
    assert run_cli(*args, "--allow-empty").returncode == 0


@pytest.fixture(scope="module")
def source_list(fixture_media, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lists") / "sources.txt"
    lines = ["# fixture sources", *(str(info.path) for info in fixture_media), "",
             str(fixture_media[0].path) + "  # duplicate of the first line", "ftp://example.invalid/x.mp4"]
    path.write_text("\n".join(lines) + "\n")
    return path


def manifest_rows(out: Path) -> list[dict]:
    return pq.read_table(out / "manifest.parquet").to_pylist()


def shard_keys(out: Path) -> list[str]:
    shards = sorted(str(p) for p in (out / "shards").glob("*.tar"))
    return [s["__key__"] for s in wds.WebDataset(shards, shardshuffle=False)]


@pytest.fixture(scope="module")
def model_args(annotation_overrides) -> list[str]:
    return [arg for item in annotation_overrides for arg in ("--set", item)]


@pytest.fixture(scope="module")
def full_run_log(source_list, model_args, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("run") / "out"
    result = run_cli("--source", str(source_list), "--out", str(out), "--num-cpus", "2", *model_args)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stderr


@pytest.fixture(scope="module")
def full_run(full_run_log) -> Path:
    return full_run_log[0]


@pytest.mark.slow
def test_the_run_ends_with_a_summary_for_a_reader(full_run_log, fixture_media) -> None:
    out, log = full_run_log
    summary = json.loads((out / "summary.json").read_text())
    assert (f"curated {summary['sources']} source(s)" in log
            and f"{summary['accepted_clips']} of {summary['candidate_clips']} candidate clip(s) accepted" in log)
    assert re.search(r"rows by reason: (\w+ \d+, )*unsupported_source 1", log)
    assert f"funnel: {out / 'funnel.png'}" in log


@pytest.mark.slow
def test_the_driver_logs_one_line_per_source_with_progress(full_run_log, fixture_media) -> None:
    _, log = full_run_log  # captured without a TTY, as under `ray job` or nohup
    lines = [line for line in log.splitlines() if re.search(r"\bsource [0-9a-f]{16} .*clip\(s\) accepted", line)]
    assert len(lines) == len(fixture_media)
    for info in fixture_media:
        (line,) = [l for l in lines if f" {info.path}: " in l]
        assert re.search(r"source [0-9a-f]{16} .*: (accepted|rejected \(\w+.*\)|failed \(\w+\)), \d+ clip\(s\) "
                         r"accepted, [0-9.]+ s \[\d+/\d+, [0-9.]+ sources/min, ETA \d+[hms]", line), line
    assert f"[{len(fixture_media)}/{len(fixture_media)}, " in log and "ETA 0s" in log
    assert "Started a local Ray instance" in log  # what the runs that must not start Ray are checked for


@pytest.mark.slow
def test_run_accounts_for_every_source(full_run, fixture_media, fixture_by_variant) -> None:
    rows = manifest_rows(full_run)
    by_source = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    assert len(by_source) == len(fixture_media) + 1  # duplicate line processed once, ftp recorded
    assert by_source["ftp://example.invalid/x.mp4"][0]["reason"] == "unsupported_source"
    for variant, kept in COPIES.items():  # the same bytes under another name: recorded, not curated twice
        (row,) = by_source[str(fixture_by_variant[variant].path)]
        assert row["reason"] == "duplicate" and row["detail"] == f"the same media bytes as {fixture_by_variant[kept].path}"
    for info in fixture_media:
        got = by_source[str(info.path)]
        reason, clips = expected(info)
        if info.variant in COPIES:
            continue
        if reason is None:
            assert sum(r["status"] == "accepted" for r in got) == clips
        else:
            assert reason in {r["reason"] for r in got}
    accepted = sorted(r["clip_id"] for r in rows if r["status"] == "accepted")
    assert sorted(shard_keys(full_run)) == accepted
    summary = json.loads((full_run / "summary.json").read_text())
    assert summary["accepted_clips"] == len(accepted)
    assert summary["by_reason"]["duplicate"] == len(COPIES)
    assert {"download", "decode_analysis", "speech_sync", "annotations", "encode"} <= set(summary["stage_seconds"])
    assert all(seconds >= 0 for seconds in summary["stage_seconds"].values())
    config = json.loads((full_run / "config.json").read_text())
    assert config["fingerprint"] == summary["config_fingerprint"] and config["config"]["quality"]["min_face_px"] == 96
    assert summary["by_reason"]["unsupported_source"] == 1
    assert summary["by_reason"]["no_speech"] == 1 and "out_of_sync" not in summary["by_reason"]
    # no SyncNet weights here: the fallback judged, kept its clips unverified, and says so
    assert summary["sync_backends"] == {"envelope": sum(r["sync_backend"] == "envelope" for r in rows)}
    assert summary["accepted_unverified_sync"] == len(accepted) and "envelope fallback" in summary["warnings"][0]
    assert all(r["sync_backend"] == "envelope" and r["sync_verified"] is False for r in rows if r["status"] == "accepted")
    assert all(r["speech_ratio"] is not None and r["sync_offset"] is not None for r in rows if r["status"] == "accepted")
    assert (full_run / "funnel.png").stat().st_size > 1000


@pytest.mark.slow
def test_rerun_does_no_work_and_changes_nothing(full_run, source_list, model_args) -> None:
    before_rows = manifest_rows(full_run)
    shards = {p.name: p.stat().st_mtime_ns for p in (full_run / "shards").glob("*.tar")}
    result = run_cli("--source", str(source_list), "--out", str(full_run), "--num-cpus", "2", *model_args)
    assert result.returncode == 0
    assert "0 to do" in result.stderr
    assert "Started a local Ray instance" not in result.stderr  # nothing to do: Ray is not started
    assert manifest_rows(full_run) == before_rows
    assert {p.name: p.stat().st_mtime_ns for p in (full_run / "shards").glob("*.tar")} == shards


@pytest.mark.slow
def test_sigkill_of_the_driver_then_rerun_completes_without_duplicates(full_run, source_list, model_args,
                                                                       tmp_path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "curation.run", "--source", str(source_list), "--out", str(out),
           "--num-cpus", "2", "--set", "run.max_in_flight=1", *model_args]
    driver = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = out / "parts"
    deadline = time.monotonic() + 300
    # Wait for the observable condition "some sources committed", then kill mid-run.
    while len(list(parts.glob("*.parquet"))) < 3 and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert driver.poll() is None, "the run finished before it could be killed"
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    assert not (out / "manifest.parquet").exists()

    result = run_cli("--source", str(source_list), "--out", str(out), "--num-cpus", "2", *model_args)
    assert result.returncode == 0, result.stderr[-3000:]
    keys = shard_keys(out)
    assert len(keys) == len(set(keys))
    assert sorted(keys) == sorted(shard_keys(full_run))
    strip = lambda rows: sorted((r["source_id"], r["clip_id"], r["status"], r["reason"]) for r in rows)  # noqa: E731
    assert strip(manifest_rows(out)) == strip(manifest_rows(full_run))


@pytest.mark.slow
def test_a_config_that_changes_results_exits_2_until_reprocess_redoes_only_affected_sources(fixture_by_variant,
                                                                                               tmp_path) -> None:
    out = tmp_path / "out"
    talk, broken = (str(fixture_by_variant[v].path) for v in ("in_sync", "truncated"))
    both = tmp_path / "both.txt"
    both.write_text(f"{talk}\n{broken}\n")
    (tmp_path / "talk.txt").write_text(f"{talk}\n")
    (tmp_path / "broken.txt").write_text(f"{broken}\n")
    base = ["--out", str(out), "--num-cpus", "1", "--set", "annotations.enabled=false"]
    assert run_cli("--source", str(tmp_path / "talk.txt"), *base).returncode == 0
    old_shards = sorted(p.name for p in (out / "shards").glob("*.tar"))
    talk_parts = {p.name for p in (out / "parts").glob("*.parquet")}
    new = [*base, "--set", "quality.min_face_px=90", "--set", "clips.max_s=9"]
    # another source, no conflict; it alone gives no candidate clip, which is expected here
    assert run_cli("--source", str(tmp_path / "broken.txt"), *new, "--allow-empty").returncode == 0
    broken_parts = {p.name: p.stat().st_mtime_ns for p in (out / "parts").glob("*.parquet") if p.name not in talk_parts}

    refused = run_cli("--source", str(both), *new, "--set", "run.max_in_flight=3")  # a run key changes freely
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == (
        f"error: {out} holds 1 source(s) curated with another config (changed: clips.max_s, quality.min_face_px); "
        "re-run with --reprocess to redo them with this config, or choose another --out")
    assert sorted(p.name for p in (out / "shards").glob("*.tar")) == old_shards

    redone = run_cli("--source", str(both), *new, "--reprocess")
    assert redone.returncode == 0, redone.stderr[-3000:]
    assert "2 sources, 1 already finished, 1 to do (1 reprocessed under the new config)" in redone.stderr
    parts = {p.name: p.stat().st_mtime_ns for p in (out / "parts").glob("*.parquet")}
    assert len(parts) == 2 and all(parts[name] == mtime for name, mtime in broken_parts.items())  # not redone
    assert not talk_parts & set(parts)  # the old config's part is gone
    shards = sorted(p.name for p in (out / "shards").glob("*.tar"))
    assert shards and not set(shards) & set(old_shards)  # the old config's shards are gone
    rows = manifest_rows(out)
    assert sorted(shard_keys(out)) == sorted(r["clip_id"] for r in rows if r["status"] == "accepted")
    assert json.loads((out / "config.json").read_text())["config"]["quality"]["min_face_px"] == 90
    assert pq.read_table(out / "manifest.parquet").schema.metadata[b"config_fingerprint"].decode() == \
        json.loads((out / "summary.json").read_text())["config_fingerprint"]
