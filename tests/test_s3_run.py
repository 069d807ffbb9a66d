"""The cloud recipe end to end against a real S3 server (moto on 127.0.0.1): curation.run straight into a
bucket prefix (killed with SIGKILL and resumed), and training from shards and model folders in the bucket."""
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import pytest

from foundation.storage import expand_shards
from model.weights import check_weights_folder, read_index, resolve
from training.data import shard_samples
from s3server import SECRET
from stagerun import losses, run_stage, stage_overrides

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("in_sync", "scene_cut", "shifted_5", "truncated", "no_face")
SETTINGS = ["--num-cpus", "2", "--set", "annotations.enabled=false"]


def s3() -> fsspec.AbstractFileSystem:
    return fsspec.filesystem("s3", use_listings_cache=False)  # other processes write the bucket


def manifest(prefix: str) -> list[dict]:
    return pq.read_table(io.BytesIO(s3().cat_file(f"{prefix}/manifest.parquet"))).to_pylist()


def shard_keys(prefix: str) -> list[str]:
    return [s["__key__"] for url in expand_shards([f"{prefix}/shards/*.tar"]) for s in shard_samples(url, strict=True)]


def outcome(rows: list[dict]) -> list[tuple]:
    return sorted((r["source_id"], r["clip_id"], r["status"], r["reason"], r["detail"]) for r in rows)


@pytest.fixture
def source_list_url(s3_bucket, fixture_by_variant, tmp_path) -> str:
    """A list object in the bucket: five fixture videos and a byte copy of the first under another name."""
    copy = tmp_path / "copy_of_in_sync.mp4"
    copy.write_bytes(fixture_by_variant["in_sync"].path.read_bytes())
    lines = [str(fixture_by_variant[v].path) for v in VARIANTS] + [str(copy)]
    url = f"{s3_bucket}/lists/sources.txt"
    s3().pipe_file(url, ("\n".join(lines) + "\n").encode())
    return url


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curation.run", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)


@pytest.mark.slow
def test_curation_into_s3_killed_and_resumed_equals_the_uninterrupted_run(s3_bucket, source_list_url,
                                                                          fixture_by_variant) -> None:
    straight = f"{s3_bucket}/straight"
    result = run_cli("--source", source_list_url, "--out", straight, *SETTINGS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert SECRET not in result.stdout + result.stderr
    rows = manifest(straight)
    assert {r["reason"] for r in rows if r["source"].endswith("copy_of_in_sync.mp4")} == {"duplicate"}
    accepted = sorted(r["clip_id"] for r in rows if r["status"] == "accepted")
    assert len(accepted) == 4 and sorted(shard_keys(straight)) == accepted
    listing = {p.rsplit("/", 1)[-1] for p in s3().ls(straight)}
    assert {"manifest.parquet", "summary.json", "funnel.png", "config.json", "parts", "shards"} <= listing
    assert json.loads(s3().cat_file(f"{straight}/summary.json"))["accepted_clips"] == 4

    killed = f"{s3_bucket}/killed"
    cmd = [sys.executable, "-m", "curation.run", "--source", source_list_url, "--out", killed, *SETTINGS,
           "--set", "run.max_in_flight=1"]
    driver = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def parts() -> int:
        return len(s3().ls(f"{killed}/parts")) if s3().exists(f"{killed}/parts") else 0

    deadline = time.monotonic() + 300
    while parts() < 2 and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # polling a condition: two sources committed
    assert driver.poll() is None, "the run finished before it could be killed"
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    assert not s3().exists(f"{killed}/manifest.parquet")

    resumed = run_cli("--source", source_list_url, "--out", killed, *SETTINGS)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert re.search(r"6 sources, [2-5] already finished", resumed.stderr)
    keys = shard_keys(killed)
    assert len(keys) == len(set(keys)) and sorted(keys) == sorted(shard_keys(straight))
    assert outcome(manifest(killed)) == outcome(rows)


@pytest.mark.slow
def test_training_from_s3_shards_and_model_folders_resumes_exactly(s3_bucket, curated_shards, tiny_pretrained,
                                                                   tmp_path, monkeypatch) -> None:
    fs = s3()
    for split, names in curated_shards.items():
        for name in names:
            fs.put_file(name, f"{s3_bucket}/curated/{split}/{Path(name).name}")
    fs.put(str(tiny_pretrained), f"{s3_bucket}/pretrained", recursive=True)
    shards = {"train": [f"{s3_bucket}/curated/train/*.tar"], "validation": [f"{s3_bucket}/curated/validation/*.tar"]}
    monkeypatch.setenv("HALLO_FORGE_CACHE", str(tmp_path / "cache"))  # where the runs mirror the model folders
    extra = {"run.checkpoint_every": 1, "run.validate_every": 0, "run.keep_last": 5, "data.num_workers": 1}


    def stage1(out: Path, steps: int, **more) -> dict:
        sets = stage_overrides(shards, tiny_pretrained, out, **extra, **{"run.max_steps": steps}, **more)
        sets[sets.index(f"model.pretrained_dir={tiny_pretrained}")] = f"model.pretrained_dir={s3_bucket}/pretrained"
        result = run_stage("stage1", sets)
        assert result.returncode == 0, result.stderr[-3000:]
        assert SECRET not in result.stdout + result.stderr
        return losses(result.stderr)

    expected = stage1(tmp_path / "straight", 2)
    first = stage1(tmp_path / "resumed", 1, **{"run.export_url": f"{s3_bucket}/runs/stage1/export"})
    resumed = stage1(tmp_path / "resumed", 2, **{"run.export_url": f"{s3_bucket}/runs/stage1/export"})
    assert list((tmp_path / "cache" / "objects").iterdir())  # the pretrained folder came from the bucket
    assert sorted(step for _, step in first) == [1] and sorted(step for _, step in resumed) == [2]
    got = {**first, **resumed}
    assert set(got) == set(expected) and all(f"{got[k]:.6f}" == f"{expected[k]:.6f}" for k in got), (got, expected)
    exported = sorted(p.rsplit("/", 1)[-1] for p in fs.find(f"{s3_bucket}/runs/stage1/export"))
    local = sorted(p.name for p in (tmp_path / "resumed" / "export").rglob("*") if p.is_file())
    assert "weights.yaml" in exported and exported == local
    # The export names its bases in the bucket, not by this machine's mirror, and they resolve from there.
    index = read_index(tmp_path / "resumed" / "export")
    assert (index.vae, index.insightface) == (f"{s3_bucket}/pretrained/vae", f"{s3_bucket}/pretrained/insightface/models")
    shutil.rmtree(tmp_path / "cache")
    check_weights_folder(str(tmp_path / "resumed" / "export"), "weights")
    assert (resolve(tmp_path / "resumed" / "export", index.vae, "vae") / "config.json").is_file()
