"""Stage-2 data loading speed from curated shards: decoded pixels vs the latent cache, side by side, and a
raw sequential read of the same bytes.

    raw read     the shard files read sequentially in 1 MiB chunks (page cache: the upper bound)
    tar split    webdataset's tar iterator: samples split into their entries, nothing decoded
    stage 2      training.data.ShardStream + training.samples.Stage2Decoder in this process, one
                 thread (torch, OpenCV): samples per second per CPU core, for three paths:
                   pixels, float   the frames decoded and turned into float in the worker (as before
                                   uint8 shipping: the same three full-size passes, applied here)
                   pixels          the frames decoded, shipped as uint8 (what training does now)
                   latents         the latent cache (data.latents): no video decode
    loader       the training DataLoader (training.data.ResumableBatches) with --workers processes

for the tiny and sd15 resolution presets. The cache shards are written by the cache job's own
writer (training.latent_cache.encode.build_cache_shard) with latents of the real shape and size but
random values (running the sd15 VAE on this CPU would take longer than the benchmark; reading
cost does not depend on the values). The shards are curated here from fixture clips with a
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
    from examples import fixtures
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


PATHS = {"pixels_float": "pixels, float in worker", "pixels": "pixels, uint8", "latents": "latents (cache)"}
STANDIN_VAE = "benchmark stand-in: random latents of the real shape"


def shape_only_latents(resolution: int) -> Callable[[bytes], tuple[Any, Any]]:
    """A clip encoder giving random float16 latents of the VAE's shape, one per frame (not timed)."""
    import io

    import av
    import numpy as np

    def encode(mp4: bytes) -> tuple[Any, Any]:
        with av.open(io.BytesIO(mp4)) as container:
            frames = sum(1 for _ in container.decode(video=0))
        rng = np.random.default_rng(frames)
        mean = rng.standard_normal((frames, 4, resolution // 8, resolution // 8)).astype(np.float16)
        return mean, (np.abs(mean) * 0.01).astype(np.float16)

    return encode


def build_cache(shards: list[str], preset: str, out: Path) -> dict[str, float]:
    """Cache shards for `shards` at the preset's resolution; returns their size per sample and per hour of video."""
    from model.presets import get_preset
    from training.latent_cache.encode import build_cache_shard

    resolution = get_preset(preset).resolution
    reports = [build_cache_shard(s, out, shape_only_latents(resolution), STANDIN_VAE, resolution) for s in shards]
    size, samples, hours = (sum(r.bytes for r in reports), sum(r.samples for r in reports),
                            sum(r.video_s for r in reports) / 3600)
    return {"mb_per_sample": size / 1e6 / samples, "gb_per_video_hour": size / 1e9 / hours}


class FloatInWorker:
    """The decoder followed by the float conversion the workers did before frames were shipped as uint8."""

    def __init__(self, decode: Callable) -> None:
        self.decode = decode

    def __call__(self, raw: dict, rng: Any) -> dict:
        out = self.decode(raw, rng)
        for key in ("reference", "motion_frames", "frames"):
            out[key] = out[key].float().div(127.5).sub(1.0)
        return out


def stream_for(shards: list[str], preset_name: str, path: str, cache: Optional[Path]) -> Any:
    from model.presets import get_preset
    from training.config import DataConfig
    from training.data import ShardStream
    from training.samples import Stage2Decoder

    latents = path == "latents"
    decoder = Stage2Decoder(get_preset(preset_name), cache_vae=STANDIN_VAE if latents else None)
    # A small shuffle buffer: a few shards must not turn the benchmark into a buffer fill.
    cfg = DataConfig(shuffle_buffer=2, latents=str(cache) if latents else None)
    return ShardStream(shards, FloatInWorker(decoder) if path == "pixels_float" else decoder, cfg, batch_size=1, seed=0)


def take(batches: Iterator[dict], count: int) -> None:
    for _ in range(count):
        next(batches)


def timed(batches: Iterator[dict], samples: int, min_wall_s: float) -> tuple[int, Any]:
    """Take `samples` batches at a time until min_wall_s has passed; (batches taken, Measured)."""
    taken = 0
    with measure() as spent:
        started = time.perf_counter()
        while taken == 0 or time.perf_counter() - started < min_wall_s:
            take(batches, samples)
            taken += samples
    return taken, spent


def bench_path(shards: list[str], preset: str, path: str, cache: Path, samples: int, workers: int,
               min_wall_s: float) -> dict[str, Any]:
    from training.data import ResumableBatches

    batches = iter(stream_for(shards, preset, path, cache))
    take(batches, 2)  # warm-up: imports, first decoder calls
    one_n, one = timed(batches, samples, min_wall_s)
    loader = ResumableBatches(stream_for(shards, preset, path, cache), workers)
    take(loader, 2 * workers)  # workers forked and running
    many_n, many = timed(loader, samples, min_wall_s)
    return {
        "one_process": {"samples": one_n, "wall_s": one.wall_s, "cpu_s": one.cpu_s,
                        "samples_per_s": one_n / one.wall_s, "samples_per_cpu_s": one_n / one.cpu_s},
        "loader": {"workers": workers, "samples": many_n, "wall_s": many.wall_s, "samples_per_s": many_n / many.wall_s},
    }


def bench_preset(shards: list[str], preset: str, work: Path, samples: int, workers: int,
                 min_wall_s: float) -> dict[str, Any]:
    cache = work / f"latents-{preset}"
    disk = build_cache(shards, preset, cache)
    paths = {path: bench_path(shards, preset, path, cache, samples, workers, min_wall_s) for path in PATHS}
    per_core = {path: r["one_process"]["samples_per_cpu_s"] for path, r in paths.items()}
    return {
        "preset": preset,
        "cache": disk,
        "paths": paths,
        "ratios": {"latents / pixels per core": per_core["latents"] / per_core["pixels"],
                   "pixels uint8 / float per core": per_core["pixels"] / per_core["pixels_float"]},
    }


def figure(results: list[dict[str, Any]], raw_per_s: float, split_per_s: float, demand: float) -> Any:
    fig, ax = new_figure(8, 4.5)
    labels, values, colors = ["raw read", "tar split"], [raw_per_s, split_per_s], ["tab:gray", "tab:gray"]
    for r in results:
        for path, name in PATHS.items():
            measured = r["paths"][path]
            labels += [f"{r['preset']}, {name}: 1 core", f"{r['preset']}, {name}: {measured['loader']['workers']} workers"]
            values += [measured["one_process"]["samples_per_cpu_s"], measured["loader"]["samples_per_s"]]
            colors += ["tab:green" if path == "latents" else "tab:blue"] * 2
    ax.barh(labels[::-1], values[::-1], color=colors[::-1])
    ax.axvline(demand, color="tab:red", linestyle="--", label=f"one GPU's stage 2 (assumed): {demand:.1f}/s")
    ax.set_xscale("log")
    ax.set_xlabel("stage-2 samples per second (log scale)")
    ax.legend(fontsize=8)
    ax.set_title("Stage-2 loading: decoded pixels vs the latent cache")
    return fig


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny,sd15", help="comma-separated model presets (resolution, frames)")
    parser.add_argument("--sources", type=int, default=2, help="fixture sources curated into shards")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per fixture source")
    parser.add_argument("--wav2vec2", choices=("base", "tiny"), default="base",
                        help="wav2vec2 stand-in whose features the shards store (base: the real size)")
    parser.add_argument("--samples", type=int, default=30, help="samples per timed round (rounds repeat for --min-wall-s)")
    parser.add_argument("--min-wall-s", type=float, default=3.0, help="seconds each measurement lasts at least")
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
        results = [bench_preset(shards, preset, work, args.samples, args.workers, args.min_wall_s)
                   for preset in args.presets.split(",")]
    per_sample = total / count
    raw_per_s = bytes_per_s / per_sample
    demand = args.gpu_batch / args.gpu_step_s
    for r in results:
        for measured in r["paths"].values():
            measured["margin_vs_one_gpu"] = measured["loader"]["samples_per_s"] / demand
            measured["margin_per_core"] = measured["one_process"]["samples_per_cpu_s"] / demand
    print_table(f"Shards: {count} samples, {per_sample / 1e6:.2f} MB each; raw read {bytes_per_s / 1e6:.0f} MB/s "
                f"= {raw_per_s:.0f} samples/s, tar split {split_per_s:.0f} samples/s",
                ["preset", "path", "samples/s (1 proc)", "samples/CPU-s", f"samples/s ({args.workers} workers)",
                 "GPU needs /s", "margin per core", f"margin ({args.workers} workers)"],
                [[r["preset"], PATHS[path], m["one_process"]["samples_per_s"], m["one_process"]["samples_per_cpu_s"],
                  m["loader"]["samples_per_s"], demand, m["margin_per_core"], m["margin_vs_one_gpu"]]
                 for r in results for path, m in r["paths"].items()])
    print_table("Ratios (per core, measured side by side in this run) and the cache's size",
                ["preset", "latents / pixels", "pixels uint8 / float", "cache MB per sample", "cache GB per video hour"],
                [[r["preset"], r["ratios"]["latents / pixels per core"], r["ratios"]["pixels uint8 / float per core"],
                  r["cache"]["mb_per_sample"], r["cache"]["gb_per_video_hour"]] for r in results])
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
