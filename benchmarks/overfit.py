"""The overfit learning model of tests/training/test_learning.py, built once into a work folder and reused.

Curate one 3-s `in_sync` fixture clip (128-px crops), cache its latents with the tiny stand-in VAE,
overfit stage 1 then stage 2 on it with configs/learn/ (the test's recipe). The trained export and
the clip's shard are what benchmarks/generate.py measures samplers on: a model whose conditional
prediction is the real clip, so every quality number has an exact target. About 5 minutes on CPU;
the folder is reused when `export/weights.yaml` is already there.

    python -m benchmarks.overfit --work bench_work/overfit
"""
from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIP_S = 3.0  # tests/training/test_learning.py's clip length

log = logging.getLogger(__name__)


@dataclass
class Overfit:
    weights: Path  # stage 2's export: a weights folder
    shards: list[str]  # the one clip it memorised
    untrained: Path  # the same bases, never trained (a floor for the quality numbers)


def _train(stage: str, sets: dict[str, str]) -> None:
    cmd = [sys.executable, str(ROOT / "training" / f"{stage}.py"), "--config", str(ROOT / "configs" / "learn" / f"{stage}.yaml"),
           *(a for k, v in sets.items() for a in ("--set", f"{k}={v}"))]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{stage} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")


def build(work: Path) -> Overfit:
    """The overfit model in `work` (trained unless `work/stage2/export` already holds it)."""
    from benchmarks.common import annotation_overrides
    from model.pretrained import base_paths, init_weights
    from model.presets import get_preset

    base, export, untrained = work / "pretrained", work / "stage2" / "export", work / "untrained"
    shards = sorted(str(p) for p in (work / "curated" / "shards").glob("*.tar"))
    if (export / "weights.yaml").is_file() and shards:
        return Overfit(export, shards, untrained)
    from examples import fixtures
    from curation.config import CurationConfig
    from curation.pipeline import process_source_safely
    from curation.sources import parse_source
    from foundation.config import load_config
    from examples.standins import write_standins
    from benchmarks.train_step import cache_latents

    work.mkdir(parents=True, exist_ok=True)
    write_standins(get_preset("tiny"), base)
    init_weights(base, get_preset("tiny"), untrained)
    info = fixtures.generate("in_sync", work / "in_sync.mp4", duration_s=CLIP_S)
    cfg = load_config(CurationConfig, None, [*annotation_overrides(base), f"pretrained_dir={base}", "faces.output_size=128"])
    rows = process_source_safely(parse_source(str(info.path), work / "curated"), work / "curated", cfg)
    shards = sorted({str(work / "curated" / "shards" / r.shard) for r in rows if r.shard})
    if len(shards) != 1:
        raise RuntimeError(f"the fixture clip was not accepted: {[r.reason for r in rows]}")
    latents = cache_latents(shards, base_paths(base)["vae"], get_preset("tiny").resolution, "cpu", work / "latents")
    common = {"data.shards": f"[{shards[0]}]", "data.latents": str(latents), "model.pretrained_dir": str(base)}
    log.info("overfitting stage 1 on %s", shards[0])
    _train("stage1", {**common, "run.output_dir": str(work / "stage1")})
    log.info("overfitting stage 2")
    _train("stage2", {**common, "run.output_dir": str(work / "stage2"), "model.init_from": str(work / "stage1" / "export")})
    return Overfit(export, shards, untrained)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder to build (or reuse) the model in")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    built = build(args.work)
    print(f"weights {built.weights}\nclip {' '.join(built.shards)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
