"""Stage-2 data loading speed from curated shards, against a raw sequential read of the same bytes.

    raw read     the shard files read sequentially in 1 MiB chunks (page cache: the upper bound)
    tar split    webdataset's tar iterator: samples split into their entries, nothing decoded
    stage 2      training.data.ShardStream + training.samples.Stage2Decoder in this process, one
                 thread (torch, OpenCV): samples per second per CPU core
    loader       the training DataLoader (training.data.ResumableBatches) with --workers processes

for the tiny and sd15 resolution presets. The shards are curated here from fixture clips with a
wav2vec2-base-size stand-in, so the stored audio features have the real size (12 x 768 per frame).
The margin is the loader's rate over what one GPU's stage-2 step consumes, --gpu-batch samples every
--gpu-step-s seconds: an assumption unless that step time was measured (benchmarks/train_step.py on
a GPU), and printed as such.

    python -m benchmarks.loader [--sources 2] [--samples 30] [--workers 2] [--gpu-step-s 1.0]
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from benchmarks.common import (DEFAULT_OUT, annotation_overrides, measure, new_figure, print_table, standin_models,
                               write_results)

CHUNK = 1 << 20
HALLO_STAGE2_BATCH = 4  # per GPU (HALLO_REFERENCE.md, stage 2)
# Not a measurement: a deliberately fast stage-2 step (batch 4, 14+2 frames at 512 px, bf16 on one
# current GPU). The paper's ~30k steps per stage in "several days" on 8 A100s means several seconds.
ASSUMED_GPU_STEP_S = 1.0


def curate_shards(work: Path, sources: int, duration: float, wav2vec2: str) -> list[str]:
    """Accepted samples from `sources` fixture clips (different seeds), curated with the default config."""
    from curation import fixtures
    from curation.config import CurationConfig
    from curation.pipeline import process_source
    from curation.sources import parse_source
    from foundation.config import load_config

    cfg = load_config(CurationConfig, None, annotation_overrides(standin_models(work / f"models-{wav2vec2}", wav2vec2)))
    out = work / "curated"
    for seed in range(sources):
        video = fixtures.generate("in_sync", work / f"source_{seed}.mp4", duration_s=duration, size=(640, 480), seed=seed)
        process_source(parse_source(str(video.path), out), out, cfg)
    shards = sorted(str(p) for p in (out / "shards").glob("*.tar"))
    if not shards:
        raise RuntimeError(f"curation accepted no clip from {sources} fixture sources")
    return shards


def raw_read(shards: list[str]) -> int:
    """Bytes read."""
    total = 0
    for shard in shards:
        with open(shard, "rb", buffering=0) as f:
            while chunk := f.read(CHUNK):
                total += len(chunk)
    return total


def tar_split(shards: list[str]) -> int:
    """Samples split out of the tar stream, entries left as bytes."""
    import webdataset as wds

    return sum(1 for _ in wds.tariterators.tarfile_samples([{"url": s} for s in shards]))


def per_second(fn: Callable[[list[str]], int], shards: list[str], min_wall_s: float = 0.5) -> tuple[float, int]:
    """(fn's count per wall second, count of one pass), over as many passes as fill min_wall_s."""
    passes, count = 0, 0
    started = time.perf_counter()
    while passes == 0 or time.perf_counter() - started < min_wall_s:
        count = fn(shards)
        passes += 1
    return count * passes / (time.perf_counter() - started), count


def stream_for(shards: list[str], preset_name: str) -> Any:
    from model.presets import get_preset
    from training.config import DataConfig
    from training.data import ShardStream
    from training.samples import Stage2Decoder

    # A small shuffle buffer: a few shards must not turn the benchmark into a buffer fill.
    return ShardStream(shards, Stage2Decoder(get_preset(preset_name)), DataConfig(shuffle_buffer=2), batch_size=1, seed=0)


def take(batches: Iterator[dict], count: int) -> None:
    for _ in range(count):
        next(batches)


def bench_preset(shards: list[str], preset: str, samples: int, workers: int) -> dict[str, Any]:
    from training.data import ResumableBatches

    batches = iter(stream_for(shards, preset))
    take(batches, 2)  # warm-up: imports, first decoder calls
    with measure() as one:
        take(batches, samples)
    loader = ResumableBatches(stream_for(shards, preset), workers)
    take(loader, 2 * workers)  # workers forked and running
    with measure() as many:
        take(loader, samples)
    return {
        "preset": preset,
        "one_process": {"samples": samples, "wall_s": one.wall_s, "cpu_s": one.cpu_s,
                        "samples_per_s": samples / one.wall_s, "samples_per_cpu_s": samples / one.cpu_s},
        "loader": {"workers": workers, "samples": samples, "wall_s": many.wall_s,
                   "samples_per_s": samples / many.wall_s},
    }


def figure(results: list[dict[str, Any]], raw_per_s: float, split_per_s: float, demand: float) -> Any:
    fig, ax = new_figure(8, 3.5)
    labels = ["raw read", "tar split"] + [f"{r['preset']}: 1 core" for r in results] + \
             [f"{r['preset']}: {r['loader']['workers']} workers" for r in results]
    values = [raw_per_s, split_per_s] + [r["one_process"]["samples_per_cpu_s"] for r in results] + \
             [r["loader"]["samples_per_s"] for r in results]
    ax.barh(labels[::-1], values[::-1], color="tab:blue")
    ax.axvline(demand, color="tab:red", linestyle="--", label=f"one GPU's stage 2 (assumed): {demand:.1f}/s")
    ax.set_xscale("log")
    ax.set_xlabel("stage-2 samples per second (log scale)")
    ax.legend(fontsize=8)
    ax.set_title("Stage-2 loading from shards")
    return fig


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny,sd15", help="comma-separated model presets (resolution, frames)")
    parser.add_argument("--sources", type=int, default=2, help="fixture sources curated into shards")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per fixture source")
    parser.add_argument("--wav2vec2", choices=("base", "tiny"), default="base",
                        help="wav2vec2 stand-in whose features the shards store (base: the real size)")
    parser.add_argument("--samples", type=int, default=30, help="samples timed per measurement")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (the cores to feed one GPU)")
    parser.add_argument("--gpu-batch", type=int, default=HALLO_STAGE2_BATCH, help="samples per GPU step")
    parser.add_argument("--gpu-step-s", type=float, default=ASSUMED_GPU_STEP_S,
                        help="seconds per stage-2 GPU step (default: an assumption, see the module docstring)")
    parser.add_argument("--work", type=Path, help="keep shards here (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for loader.json and loader.png")
    args = parser.parse_args(argv)
    if args.sources < args.workers:
        # Each source is one shard of one sample; with fewer shards than readers, training.data deals
        # every n-th sample to each reader, and a reader left without one waits forever.
        parser.error(f"--sources ({args.sources}) must be at least --workers ({args.workers})")
    return args


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    import cv2
    import torch

    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        shards = curate_shards(work, args.sources, args.duration, args.wav2vec2)
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        bytes_per_s, total = per_second(raw_read, shards)
        split_per_s, count = per_second(tar_split, shards)
        results = [bench_preset(shards, preset, args.samples, args.workers) for preset in args.presets.split(",")]
    per_sample = total / count
    raw_per_s = bytes_per_s / per_sample
    demand = args.gpu_batch / args.gpu_step_s
    for r in results:
        r["margin_vs_one_gpu"] = r["loader"]["samples_per_s"] / demand
        r["margin_per_core"] = r["one_process"]["samples_per_cpu_s"] / demand
        r["raw_read_over_stage2"] = raw_per_s / r["one_process"]["samples_per_cpu_s"]
    print_table(f"Shards: {count} samples, {per_sample / 1e6:.2f} MB each; raw read {bytes_per_s / 1e6:.0f} MB/s "
                f"= {raw_per_s:.0f} samples/s, tar split {split_per_s:.0f} samples/s",
                ["preset", "samples/s (1 proc)", "samples/CPU-s", f"samples/s ({args.workers} workers)",
                 "raw read / stage 2", "GPU needs /s", "margin per core", f"margin ({args.workers} workers)"],
                [[r["preset"], r["one_process"]["samples_per_s"], r["one_process"]["samples_per_cpu_s"],
                  r["loader"]["samples_per_s"], r["raw_read_over_stage2"], demand, r["margin_per_core"],
                  r["margin_vs_one_gpu"]] for r in results])
    print(f"\nGPU demand: {args.gpu_batch} samples per {args.gpu_step_s:g} s step"
          + (" (ASSUMED, not measured)" if args.gpu_step_s == ASSUMED_GPU_STEP_S else ""))
    payload = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "gpu_step_assumed": args.gpu_step_s == ASSUMED_GPU_STEP_S,
        "shards": {"count": len(shards), "samples": count, "bytes": total, "mb_per_sample": per_sample / 1e6},
        "raw_read": {"mb_per_s": bytes_per_s / 1e6, "samples_per_s": raw_per_s},
        "tar_split": {"samples_per_s": split_per_s},
        "gpu_demand_samples_per_s": demand,
        "presets": results,
    }
    json_path, png_path = write_results(args.out, "loader", payload, figure(results, raw_per_s, split_per_s, demand))
    print(f"\nwrote {json_path} and {png_path}")
    return payload


if __name__ == "__main__":
    main()
