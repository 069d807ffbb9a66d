"""Shards and helpers for the training tests: real fixture clips curated with the tiny stand-ins."""
from pathlib import Path

import pytest

from orchestration.config import load_config


@pytest.fixture(scope="session")
def curated_shards(fixture_by_variant, annotation_overrides, tmp_path_factory) -> dict[str, list[str]]:
    """Annotated shards: `train` from three sources, `validation` from a fourth (held out)."""
    from curation.config import CurationConfig
    from curation.pipeline import process_source_safely
    from curation.sources import parse_source

    out = tmp_path_factory.mktemp("curated")
    cfg = load_config(CurationConfig, None, annotation_overrides)
    shards: dict[str, list[str]] = {"train": [], "validation": []}
    for variant, split in [("in_sync", "train"), ("scene_cut", "train"), ("odd_extension", "train"),
                           ("shifted_5", "validation")]:
        rows = process_source_safely(parse_source(str(fixture_by_variant[variant].path), out), out, cfg)
        shards[split] += sorted({str(out / "shards" / r.shard) for r in rows if r.shard})
    assert shards["train"] and shards["validation"]
    return shards
