"""`python -m curation.run` as a user runs it: local Ray, re-runs, and a SIGKILLed driver."""
import json
import os
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
def full_run(source_list, model_args, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "out"
    result = run_cli("--source", str(source_list), "--out", str(out), "--num-cpus", "2", *model_args)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.slow
def test_run_accounts_for_every_source(full_run, fixture_media) -> None:
    rows = manifest_rows(full_run)
    by_source = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    assert len(by_source) == len(fixture_media) + 1  # duplicate processed once, ftp recorded
    assert by_source["ftp://example.invalid/x.mp4"][0]["reason"] == "unsupported_source"
    for info in fixture_media:
        got = by_source[str(info.path)]
        reason, clips = expected(info)
        if reason is None:
            assert sum(r["status"] == "accepted" for r in got) == clips
        else:
            assert reason in {r["reason"] for r in got}
    accepted = sorted(r["clip_id"] for r in rows if r["status"] == "accepted")
    assert sorted(shard_keys(full_run)) == accepted
    summary = json.loads((full_run / "summary.json").read_text())
    assert summary["accepted_clips"] == len(accepted)
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
