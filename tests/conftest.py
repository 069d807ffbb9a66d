import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def fixture_media(tmp_path_factory) -> list:
    """Every fixture variant (real faces + real speech, and broken inputs), generated once per session."""
    from examples import fixtures

    return fixtures.generate_all(tmp_path_factory.mktemp("fixture_media"))


@pytest.fixture(scope="session")
def fixture_by_variant(fixture_media) -> dict:
    return {info.variant: info for info in fixture_media}


@pytest.fixture(scope="session")
def tiny_pretrained(tmp_path_factory) -> Path:
    """Tiny random stand-ins of the pretrained bases (wav2vec2, insightface, ...), written once per
    session by `python -m examples.standins` in the same layout as the real ones."""
    from examples.standins_cli import main as standins_main

    base = tmp_path_factory.mktemp("tiny_pretrained")
    assert standins_main(["--to", str(base)]) == 0
    return base


@pytest.fixture(scope="session")
def annotation_overrides(tiny_pretrained) -> list[str]:
    """`--set` overrides pointing curation's annotation models at the tiny stand-ins, and the lip-sync
    base folder (pretrained_dir) there too (it holds no SyncNet, so `sync.backend=auto` falls back whatever
    ./pretrained holds on this machine)."""
    return [f"annotations.wav2vec2_dir={tiny_pretrained / 'wav2vec2'}",
            f"annotations.insightface_dir={tiny_pretrained / 'insightface' / 'models'}",
            f"pretrained_dir={tiny_pretrained}"]


@pytest.fixture(scope="session")
def curated_shards(fixture_by_variant, annotation_overrides, tmp_path_factory) -> dict[str, list[str]]:
    """Annotated shards: `train` from three sources, `validation` from a fourth (held out)."""
    from curation.config import CurationConfig
    from curation.pipeline import process_source_safely
    from curation.sources import parse_source
    from foundation.config import load_config

    out = tmp_path_factory.mktemp("curated")
    cfg = load_config(CurationConfig, None, annotation_overrides)
    shards: dict[str, list[str]] = {"train": [], "validation": []}
    for variant, split in [("in_sync", "train"), ("scene_cut", "train"), ("odd_extension", "train"),
                           ("shifted_5", "validation")]:
        rows = process_source_safely(parse_source(str(fixture_by_variant[variant].path), out), out, cfg)
        shards[split] += sorted({str(out / "shards" / r.shard) for r in rows if r.shard})
    assert shards["train"] and shards["validation"]
    return shards


@pytest.fixture(scope="session")
def s3_server():
    """moto's standalone S3 server on 127.0.0.1, one per session (see tests/s3server.py)."""
    import s3server

    server = s3server.start()
    try:
        yield server
    finally:
        s3server.stop(server)


@pytest.fixture
def s3_bucket(s3_server, monkeypatch) -> str:
    """A fresh bucket, with the standard AWS variables pointing this process and its children at the server."""
    import uuid

    import fsspec

    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("s3", skip_instance_cache=True).mkdir(bucket)
    return f"s3://{bucket}"
