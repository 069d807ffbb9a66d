"""Sampling schedules side by side on the same weights in one process: denoiser passes and seconds per
output frame, peak memory, and quality against the real clip and against the 40-step output.

Schedules: Hallo's (`hallo`: 40 DDIM steps, guidance on every step), `ddim-40` (40 DDIM steps guided as
the weights say: generation's default before the presets), the presets `balanced` and `fast`, and any
`SAMPLER:STEPS` (e.g. `unipc:6`) to try. Each runs the generation pipeline as `python -m model.generate`
prepares it (model.generate.prepare: loaded once), only the sampling settings changing; the timed part is
the pipeline call (conditioning, sampling, VAE decode), its runs alternating over the schedules when
`--repeats` > 1 so that all see the same machine load (the median counts).

Quality needs a model whose target is known: on CPU (the default: tiny preset) the overfit learning
model of tests/training/test_learning.py (benchmarks/overfit.py; trained into --work once, about 5
minutes, then reused; or `--weights DIR --clip SHARD` for one trained elsewhere), generating its clip
back from the clip's first frame and audio. Against the real clip: PSNR, lip-box PSNR and the mouth
brightness correlation (examples.learning, as `make demo` and the learning test measure); LSE-C/D
when SyncNet weights are there (`--syncnet`, default pretrained/syncnet/syncnet_v2.model). Against the
`ddim-40` output: PSNR (what fewer steps cost, the guidance being the same).

    python -m benchmarks.generate                                  # CPU, tiny, the overfit model
    python -m benchmarks.generate --weights W --clip SHARD.tar     # reuse trained weights and their clip
    python -m benchmarks.generate --device cuda                    # sd15 at 512 px, random weights: speed, memory

With random weights (cuda without --weights) there is no quality to measure: speed and memory do not
depend on the weights' values.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np

from benchmarks.common import DEFAULT_OUT, measure, new_figure, print_table, restart_peak_rss, status_mb, write_results

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "examples" / "assets"
DEFAULT_SCHEDULES = "hallo,ddim-40,balanced,fast"
BASELINE = "ddim-40"  # the 40-step output the others are compared with
HALLO_PAPER = {"s_per_frame": 1.63, "gpu": "A100", "resolution": 512, "memory_gb": 9.8}  # Hallo's paper, 512 px

log = logging.getLogger(__name__)


def schedule_overrides(name: str) -> dict[str, Any]:
    """GenerateConfig fields of a schedule name: a preset, `ddim-40`, or SAMPLER:STEPS."""
    from model.scheduler import PRESETS, SAMPLERS

    if name in PRESETS:
        return {"preset": name}
    if name == "ddim-40":
        return {"sampler": "ddim", "steps": 40}
    sampler, _, steps = name.partition(":")
    if sampler not in SAMPLERS or not steps.isdigit() or int(steps) < 1:
        raise ValueError(f"schedule {name!r}: a preset ({', '.join(PRESETS)}), ddim-40, or SAMPLER:STEPS with "
                         f"SAMPLER one of {', '.join(SAMPLERS)}")
    return {"sampler": sampler, "steps": int(steps)}


def _peak_reset(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        restart_peak_rss()


def _peak_mb(device: Any) -> float:
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else status_mb("VmHWM")


def run_schedules(cfg: Any, names: list[str], repeats: int = 1, real: Any = None, scorer: Any = None,
                  audio: Optional[np.ndarray] = None) -> list[dict[str, Any]]:
    """Every schedule on the pipeline `cfg` (a GenerateConfig) prepares; quality against `real` (a RealClip)."""
    import torch

    from model.generate import prepare, sampling
    from model.preflight import check_generation
    from examples.learning import psnr

    inputs = check_generation(cfg)
    pipeline, reference, features, base = prepare(cfg, inputs)
    behaviour, device = inputs.index.behaviour, inputs.device
    runs: dict[str, dict[str, Any]] = {}
    for name in names:
        preset, fields = sampling(dataclasses.replace(cfg, **schedule_overrides(name)), behaviour)
        settings = dataclasses.replace(base, **fields)
        plan = pipeline.plan(settings)
        clips = -(-settings.frames // settings.clip_frames)
        runs[name] = {"schedule": name, "preset": preset, **plan.describe(clips, settings.frames), "settings": settings,
                      "wall_s": [], "frames": settings.frames}
    outputs: dict[str, np.ndarray] = {}
    pipeline(reference, features, dataclasses.replace(base, steps=1), progress=False)  # warm-up: first-call costs
    for _ in range(repeats):
        for name, run in runs.items():
            _peak_reset(device)
            with measure() as timed:
                outputs[name] = pipeline(reference, features, run["settings"], progress=False)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
            run["wall_s"].append(timed.wall_s)
            run["peak_mb"] = max(run.get("peak_mb", 0.0), _peak_mb(device))
    results = []
    for name, run in runs.items():
        run.pop("settings")
        wall = statistics.median(run["wall_s"])
        row = {**run, "s_per_frame": wall / run["frames"], "batched_guidance": pipeline.batched_guidance}
        if real is not None:
            match = real.compare(outputs[name])
            row.update(psnr=match.psnr, mouth_psnr=match.mouth_psnr, mouth_corr=match.mouth_corr)
            if BASELINE in outputs:
                row["psnr_vs_ddim40"] = psnr(outputs[name], outputs[BASELINE])
        if scorer is not None and audio is not None:
            from model.evaluate import sync_metrics

            sync = sync_metrics(outputs[name], audio, scorer)
            row.update(lse_c=sync.lse_c, lse_d=sync.lse_d)
        results.append(row)
    return results


def ratios(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each schedule against Hallo's: passes and wall-clock ratios, PSNR and mouth correlation against ddim-40."""
    by = {r["schedule"]: r for r in results}
    hallo, base = by.get("hallo"), by.get(BASELINE)
    out = {}
    for r in results:
        entry: dict[str, Any] = {}
        if hallo:
            entry["fewer_passes_than_hallo"] = hallo["passes_per_frame"] / r["passes_per_frame"]
            entry["faster_than_hallo"] = hallo["s_per_frame"] / r["s_per_frame"]
        if base and "psnr" in r:
            entry["psnr_minus_ddim40_db"] = r["psnr"] - base["psnr"]
            entry["mouth_corr_minus_ddim40"] = r["mouth_corr"] - base["mouth_corr"]
        out[r["schedule"]] = entry
    return out


def random_weights(work: Path, preset: str) -> Path:
    """A weights folder of random weights at the preset's sizes (stand-in bases), written once into `work`."""
    from model.pretrained import init_weights
    from model.presets import get_preset
    from examples.standins import write_standins

    weights = work / f"weights-{preset}"
    if not (weights / "weights.yaml").is_file():
        base = work / f"bases-{preset}"
        if not (base / "unet" / "config.json").is_file():
            write_standins(get_preset(preset), base)
        init_weights(base, get_preset(preset), weights)
    return weights


def speech(out: Path, frames: int, fps: int = 25) -> Path:
    """The first `frames` video frames' worth of a bundled real speech recording."""
    import soundfile as sf

    data, rate = sf.read(ASSETS / "speech_0870.wav", dtype="float32")
    sf.write(out, data[: int(frames / fps * rate)], rate)
    return out


def table(results: list[dict[str, Any]], title: str) -> None:
    print_table(title, ["schedule", "sampler", "steps", "guided", "passes/frame", "s/frame", "peak MB", "PSNR dB",
                        "lip PSNR dB", "mouth corr", "PSNR vs ddim-40", "LSE-C", "LSE-D"],
                [[r["schedule"], r["sampler"], r["steps"], r["guided_steps"], r["passes_per_frame"], r["s_per_frame"],
                  r["peak_mb"], r.get("psnr"), r.get("mouth_psnr"), r.get("mouth_corr"), r.get("psnr_vs_ddim40"),
                  r.get("lse_c"), r.get("lse_d")] for r in results])


def figure(results: list[dict[str, Any]], setting: str) -> Any:
    fig, ax = new_figure(8, 0.6 + 0.45 * len(results))
    names = [r["schedule"] for r in results]
    ax.barh(names, [r["s_per_frame"] for r in results], color="tab:blue")
    for i, r in enumerate(results):
        quality = f", {r['psnr']:.2f} dB, corr {r['mouth_corr']:.2f}" if "psnr" in r else ""
        ax.text(r["s_per_frame"], i, f" {r['passes_per_frame']:.2f} passes/frame{quality}", va="center", fontsize=8)
    ax.set_xlabel(f"seconds per output frame ({setting})")
    ax.invert_yaxis()
    ax.set_title("Generation: sampling schedules on the same weights")
    return fig


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--preset", choices=("tiny", "sd15"), help="model size of random weights (default: sd15 on "
                        "cuda); on cpu without --weights the overfit tiny model")
    parser.add_argument("--schedules", default=DEFAULT_SCHEDULES, help="comma-separated: presets, ddim-40, SAMPLER:STEPS")
    parser.add_argument("--weights", type=Path, help="trained weights folder to measure (with --clip: quality too)")
    parser.add_argument("--clip", nargs="+", help="shard(s) holding the clip the weights were trained on")
    parser.add_argument("--random-weights", action="store_true", help="random weights at --preset size (no quality)")
    parser.add_argument("--frames", type=int, default=32, help="frames to generate with random weights")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "float16", "bfloat16"))
    parser.add_argument("--cpu-threads", type=int, default=0, help="torch threads on cpu (0 = auto)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per schedule, alternating (median counts)")
    parser.add_argument("--syncnet", type=Path, default=ROOT / "pretrained" / "syncnet" / "syncnet_v2.model",
                        help="SyncNet weights for LSE-C/D (skipped when absent)")
    parser.add_argument("--work", type=Path, help="keep the trained or random weights here (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for generate.json and generate.png")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    from foundation.cpu_threads import set_cpu_threads
    from model.generate_config import GenerateConfig
    from model.weights import read_index
    from examples.learning import RealClip

    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    names = args.schedules.split(",")
    for name in names:
        schedule_overrides(name)  # a bad name fails before anything is built
    set_cpu_threads(args.cpu_threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        real, weights, clip = None, args.weights, args.clip
        if weights is None and (args.random_weights or args.device == "cuda"):
            weights = random_weights(work, args.preset or ("sd15" if args.device == "cuda" else "tiny"))
        elif weights is None:
            from benchmarks.overfit import build

            built = build(work / "overfit")
            weights, clip = built.weights, built.shards
        index = read_index(weights)
        if clip:
            real = RealClip.from_shards(clip, index.resolution)
            image, audio = real.write_inputs(work / "inputs")
        else:
            image, audio = ASSETS / "astronaut.jpg", speech(work / "speech.wav", args.frames, index.fps)
        scorer, samples = None, None
        if args.syncnet.is_file():
            from foundation.audio_features import SAMPLE_RATE
            from foundation.media_io import read_audio
            from foundation.syncnet import SyncNetScorer

            scorer, samples = SyncNetScorer(args.syncnet, args.device), read_audio(audio, SAMPLE_RATE, mono=True)[0][0]
        cfg = GenerateConfig(weights=str(weights), image=str(image), audio=str(audio), out=str(work / "unused.mp4"),
                             device=args.device, dtype=args.dtype, cpu_threads=args.cpu_threads, progress=False,
                             allow_no_face=True)
        results = run_schedules(cfg, names, args.repeats, real, scorer, samples)
    setting = f"{index.preset} at {index.resolution} px, {args.device}, {results[0]['frames']} frames"
    table(results, f"Generation schedules ({setting}; quality: {'the overfit clip' if real else 'none, random weights'})")
    checks = ratios(results)
    print_table("Against Hallo's schedule (same run) and the 40-step output", ["schedule", "fewer passes than hallo",
                "faster than hallo", "PSNR - ddim-40 (dB)", "mouth corr - ddim-40"],
                [[n, c.get("fewer_passes_than_hallo"), c.get("faster_than_hallo"), c.get("psnr_minus_ddim40_db"),
                  c.get("mouth_corr_minus_ddim40")] for n, c in checks.items()])
    if args.device == "cuda":
        print(f"Hallo's paper: {HALLO_PAPER['s_per_frame']} s/frame, {HALLO_PAPER['memory_gb']} GB on an "
              f"{HALLO_PAPER['gpu']} at {HALLO_PAPER['resolution']} px")
    payload = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "model": {"preset": index.preset, "resolution": index.resolution, "weights": str(weights),
                         "quality": "overfit clip" if real else None},
               "hallo_paper": HALLO_PAPER, "schedules": results, "ratios": checks}
    json_path, png_path = write_results(args.out, "generate", payload, figure(results, setting))
    print(f"\nwrote {json_path} and {png_path}")
    return payload


if __name__ == "__main__":
    main()
