"""foundation.storage and the commit protocol against a real S3 server (moto, on 127.0.0.1)."""
import tempfile
from pathlib import Path

import fsspec
import numpy as np
import pytest
import torch
import webdataset as wds

from curation.config import CurationConfig
from curation.manifest_parts import list_parts
from curation.pipeline import process_source_safely
from curation.run_output import finalize_output
from curation.sources import parse_source, parse_source_list
from foundation.config import load_config
from foundation.storage import Location, StorageError, expand_shards, local_folder, publish_folder
from s3server import SECRET
from training.config import DataConfig
from training.data import ResumableBatches, ShardStream, shard_samples


def objects(url: str) -> list[str]:
    fs = fsspec.filesystem("s3", use_listings_cache=False)
    return sorted(p.split("/", 1)[1] for p in fs.find(url.removeprefix("s3://")))


def test_objects_are_written_whole_listed_read_and_deleted(s3_bucket, tmp_path) -> None:
    loc = Location(f"{s3_bucket}/out/")
    assert not loc.local and loc.uri("parts/a.parquet") == f"{s3_bucket}/out/parts/a.parquet"
    loc.write_bytes("parts/a.parquet", b"A")
    staged = loc.staging_file("shards/x.tar")
    staged.write_bytes(b"tar bytes")
    assert objects(s3_bucket) == ["out/parts/a.parquet"]  # staged locally: nothing visible yet
    loc.commit(staged, "shards/x.tar")
    assert not staged.exists() and loc.list("shards") == ["x.tar"] and loc.list("nothing") == []
    assert loc.read_many(["parts/a.parquet", "shards/x.tar"]) == {"parts/a.parquet": b"A", "shards/x.tar": b"tar bytes"}
    loc.delete(["shards/x.tar"])
    assert objects(s3_bucket) == ["out/parts/a.parquet"]
    assert loc.scratch_dir("downloads").is_relative_to(tempfile.gettempdir())  # downloads stay on local disk


def test_an_unwritable_location_is_one_line_without_secrets(s3_bucket) -> None:
    Location(f"{s3_bucket}/ok").ensure_writable()
    with pytest.raises(StorageError) as err:
        Location("s3://no-such-bucket-hallo/out").ensure_writable()
    message = str(err.value)
    assert message.startswith("cannot write to s3://no-such-bucket-hallo/out:") and "\n" not in message
    assert SECRET not in message
    with pytest.raises(StorageError, match="cannot use nosuchscheme://x"):
        Location("nosuchscheme://x")


def test_a_source_list_can_be_an_object(s3_bucket, tmp_path) -> None:
    video = tmp_path / "talk.mp4"
    video.write_bytes(b"x")
    fs = fsspec.filesystem("s3")
    fs.pipe(f"{s3_bucket}/lists/sources.txt".removeprefix("s3://"),
            f"# list\n{video}\nrelative.mp4\nhttps://example.com/v.mp4\n".encode())
    sources, rejected = parse_source_list(f"{s3_bucket}/lists/sources.txt")
    assert [s.raw for s in sources] == [str(video), "https://example.com/v.mp4"]
    assert rejected[0][0] == "relative.mp4" and "relative path" in rejected[0][1].detail
    with pytest.raises(FileNotFoundError, match="source list not found"):
        parse_source_list(f"{s3_bucket}/lists/missing.txt")


@pytest.fixture
def s3_shards(s3_bucket) -> str:
    fs = fsspec.filesystem("s3")
    for s in range(3):
        with fs.open(f"{s3_bucket}/shards/s{s}.tar".removeprefix("s3://"), "wb") as fh, wds.TarWriter(fh) as writer:
            for i in range(7):
                writer.write({"__key__": f"k{s}_{i}", "txt": f"{s}-{i}".encode()})
    return f"{s3_bucket}/shards"


def test_shard_patterns_on_s3_expand_and_stream(s3_shards) -> None:
    shards = expand_shards([f"{s3_shards}/*.tar"])
    assert shards == [f"{s3_shards}/s{i}.tar" for i in range(3)]
    assert expand_shards([f"{s3_shards}/s{{0..1}}.tar"]) == shards[:2]  # no glob: passes through
    samples = [sample for url in shards[1:] for sample in shard_samples(url, strict=True)]
    assert [s["__key__"] for s in samples] == [f"k{s}_{i}" for s in (1, 2) for i in range(7)]
    assert samples[0]["txt"] == b"1-0" and samples[0]["__url__"] == shards[1]


def decode(raw: dict, rng: np.random.Generator) -> dict:
    return {"value": torch.tensor(int(rng.integers(0, 10**6)))}


@pytest.mark.parametrize("workers", [0, 2])
def test_the_shard_stream_from_s3_resumes_exactly(s3_shards, workers) -> None:
    def take(n: int, state=None):
        stream = ShardStream([f"{s3_shards}/*.tar"], decode, DataConfig(shuffle_buffer=4), batch_size=2, seed=7)
        batches = ResumableBatches.from_state(stream, workers, state)
        got = [next(batches) for _ in range(n)]
        return [k for b in got for k in b["key"]], [v for b in got for v in b["value"].tolist()], batches

    keys, values, _ = take(10)
    keys1, values1, first = take(4)
    keys2, values2, _ = take(6, first.state_dict())
    assert keys1 + keys2 == keys and values1 + values2 == values
    assert {key.split("_")[0] for key in keys} == {"k0", "k1", "k2"}  # every shard on the store was read


def test_a_folder_published_to_s3_mirrors_back(s3_bucket, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HALLO_FORGE_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "export"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "w.safetensors").write_bytes(b"w" * 1000)
    (folder / "weights.yaml").write_text("preset: tiny\n")
    (folder / "old.txt").write_text("x")
    publish_folder(folder, f"{s3_bucket}/runs/export", last="weights.yaml")
    (folder / "old.txt").unlink()
    publish_folder(folder, f"{s3_bucket}/runs/export", last="weights.yaml")
    assert objects(s3_bucket) == ["runs/export/unet/w.safetensors", "runs/export/weights.yaml"]
    mirror = local_folder(f"{s3_bucket}/runs/export")
    assert mirror.is_relative_to(tmp_path / "cache")
    assert (mirror / "unet" / "w.safetensors").read_bytes() == b"w" * 1000
    assert (mirror / "weights.yaml").read_text() == "preset: tiny\n"
    assert local_folder(str(folder)) == folder
    with pytest.raises(FileNotFoundError, match="no objects"):
        local_folder(f"{s3_bucket}/runs/nothing")


class _Killed(BaseException):
    """What a task sees of its node dying: nothing after this point runs."""


def test_a_retried_source_on_s3_leaves_exactly_one_attempts_samples(s3_bucket, fixture_by_variant, monkeypatch,
                                                                   tmp_path) -> None:
    """Three attempts of one source into one prefix, as Ray retries after lost nodes can produce: the first
    commits, the second dies after uploading its shards but before its part, the third commits again.
    After settling, the prefix holds exactly the samples of the committed part."""
    out = Location(f"{s3_bucket}/curated")
    cfg = load_config(CurationConfig, overrides=["annotations.enabled=false"])
    source = parse_source(str(fixture_by_variant["scene_cut"].path), tmp_path)

    first = process_source_safely(source, out, cfg)
    with monkeypatch.context() as patch:
        def die(*args, **kwargs):
            raise _Killed()

        patch.setattr("curation.pipeline.write_part", die)
        with pytest.raises(_Killed):
            process_source_safely(source, out, cfg)
    third = process_source_safely(source, out, cfg)

    accepted = sorted(r.clip_id for r in third if r.status == "accepted")
    assert len(accepted) == 2 and accepted == sorted(r.clip_id for r in first if r.status == "accepted")
    assert len(out.list("shards")) == 3  # one shard per attempt before settling: duplicates visible
    assert len(list_parts(out)[source.source_id]) == 1
    finalize_output(out, [source], cfg, [], 1.0)
    shards = expand_shards([f"{out.url}/shards/*.tar"])
    assert sorted(Path(s).name for s in shards) == sorted({r.shard for r in third if r.shard})
    keys = [s["__key__"] for url in shards for s in shard_samples(url, strict=True)]
    assert sorted(keys) == accepted
    assert "manifest.parquet" in out.list("") and "summary.json" in out.list("")
