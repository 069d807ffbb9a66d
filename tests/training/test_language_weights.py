"""data.language_weights: mostly-Mandarin shards give an English share set by the weights, the choice is
seeded by the sample's position (exact on resume), and weights that leave out everything stop the run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds

from foundation import schema
from foundation.config import ConfigError, load_config
from training.config import DataConfig, TrainConfig
from training.data import ResumableBatches, ShardStream


def _meta(key: str, language: str | None) -> bytes:
    return schema.ClipMeta(clip_id=key, source="s", source_id="s", start_s=0.0, end_s=1.0, num_frames=25, fps=25,
                           sample_rate=16000, size=64, crop_boxes=[], metrics={}, language=language).to_json()


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """Two shards of 20 clips each: 16 Mandarin, 4 English."""
    root = tmp_path_factory.mktemp("lang_shards")
    for s in range(2):
        with wds.TarWriter(str(root / f"s{s}.tar")) as writer:
            for i in range(20):
                key = f"k{s}_{i:02d}"
                writer.write({"__key__": key, "json": _meta(key, "en" if i % 5 == 0 else "zh")})
    return root


def decode(raw: dict, rng: np.random.Generator) -> dict:
    language = schema.ClipMeta.from_json(raw["json"]).language
    return {"english": torch.tensor(language == "en"), "draw": torch.tensor(int(rng.integers(0, 10**6)))}


def take(root: Path, n: int, weights: dict, state=None) -> tuple[list[str], list[bool], list[int], ResumableBatches]:
    stream = ShardStream([str(root / "*.tar")], decode, DataConfig(shuffle_buffer=8, language_weights=weights),
                         batch_size=4, seed=3)
    batches = ResumableBatches.from_state(stream, 0, state)
    got = [next(batches) for _ in range(n)]
    return ([k for b in got for k in b["key"]], [e for b in got for e in b["english"].tolist()],
            [d for b in got for d in b["draw"].tolist()], batches)


def test_weights_set_the_share_of_each_language(shards: Path) -> None:
    _, english, plain_draws, _ = take(shards, 50, {})
    assert np.mean(english) == pytest.approx(0.2)  # 200 samples = 5 epochs of 40: the data's own share
    _, weighted, _, _ = take(shards, 50, {"zh": 0.25})
    # 4 English to 16 * 0.25 Mandarin: half and half in expectation (200 samples: +-0.035 standard deviation)
    assert 0.4 < np.mean(weighted) < 0.6
    # a kept sample's decode draws are those it has without weighting (the choice has its own generator)
    _, _, unweighted_draws, _ = take(shards, 50, {"zh": 1.0})
    assert unweighted_draws == plain_draws


def test_weighting_resumes_exactly(shards: Path) -> None:
    keys, _, draws, _ = take(shards, 12, {"zh": 0.3})
    keys1, _, draws1, first = take(shards, 5, {"zh": 0.3})
    keys2, _, draws2, _ = take(shards, 7, {"zh": 0.3}, first.state_dict())
    assert keys1 + keys2 == keys and draws1 + draws2 == draws


def test_weights_that_leave_out_every_clip_stop_with_the_reason(shards: Path) -> None:
    with pytest.raises(RuntimeError, match="data.language_weights .* left out the first 50 clips"):
        take(shards, 1, {"zh": 0.0, "en": 0.0})
    with pytest.raises(ConfigError, match="data.language_weights"):
        load_config(TrainConfig, None, ["data.language_weights={zh: -1}"])
