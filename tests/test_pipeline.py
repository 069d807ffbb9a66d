"""The whole per-source data path on real fixture media, without Ray."""
from pathlib import Path

import av
import io
import numpy as np
import pytest
import soundfile as sf
import webdataset as wds

from curation import schema
from curation.config import CurationConfig
from curation.pipeline import process_source_safely
from curation.sources import parse_source


@pytest.fixture(scope="module")
def outcomes(fixture_media, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("pipeline_out")
    cfg = CurationConfig()
    rows = {info.variant: process_source_safely(parse_source(str(info.path), out), out, cfg) for info in fixture_media}
    return out, rows


def test_every_fixture_ends_with_its_expected_outcome(fixture_media, outcomes) -> None:
    _, rows = outcomes
    for info in fixture_media:
        got = rows[info.variant]
        accepted = [r for r in got if r.status == "accepted"]
        if info.reason is None:
            assert len(accepted) == info.clips, (info.variant, got)
            assert all(r.shard and r.clip_id for r in accepted)
        else:
            assert not accepted, (info.variant, got)
            assert info.reason in {r.reason for r in got}, (info.variant, [r.reason for r in got])
        assert all(r.source_id == got[0].source_id for r in got)


def test_no_clip_crosses_the_scene_cut(fixture_by_variant, outcomes) -> None:
    _, rows = outcomes
    cut_s = fixture_by_variant["scene_cut"].duration_s / 2
    accepted = [r for r in rows["scene_cut"] if r.status == "accepted"]
    assert len(accepted) == 2
    assert all(r.end_s <= cut_s + 0.2 or r.start_s >= cut_s - 0.2 for r in accepted)


def _samples(out: Path) -> list[dict]:
    shards = sorted(str(p) for p in (out / "shards").glob("*.tar"))
    return list(wds.WebDataset(shards, shardshuffle=False))


def test_shards_read_back_with_centred_faces_and_matching_lengths(outcomes) -> None:
    out, rows = outcomes
    samples = _samples(out)
    accepted = {r.clip_id for rs in rows.values() for r in rs if r.status == "accepted"}
    assert sorted(s["__key__"] for s in samples) == sorted(accepted)
    for sample in samples:
        meta = schema.check_sample(sample)
        frames = [f.to_ndarray(format="rgb24") for f in av.open(io.BytesIO(sample["mp4"])).decode(video=0)]
        assert len(frames) == meta.num_frames and frames[0].shape == (512, 512, 3)
        audio, rate = sf.read(io.BytesIO(sample["wav"]))
        assert rate == 16000 and abs(len(audio) - meta.num_frames * 640) <= 1
        landmarks = schema.decode_npy(sample["landmarks.npy"]).astype(np.float32)
        centre = landmarks.reshape(-1, 2).mean(0)
        assert np.all(np.abs(centre - 256) < 0.15 * 512), (meta.clip_id, centre)  # face centred
        assert not np.isnan(landmarks).any()
        assert meta.end_s - meta.start_s == pytest.approx(meta.num_frames / 25)
