"""Seconds per training step (median), samples per second, peak memory and the VAE-encode share, for stage 1
and stage 2, with gradient checkpointing on and off, from decoded pixels and from the latent cache.

Each configuration runs in its own process, built by the real stage classes (training/stage1.py,
training/stage2.py: the same modules, trainable sets, precision and checkpointing as training) and
wrapped by the real DeepSpeed engine (training.engine.build_engine, one process, ZeRO as configured).
A step is exactly training.loop's: engine(batch) -> engine.backward -> engine.step, on one batch
decoded from curated fixture shards by the stage's decoder and reused every step, so data loading
(benchmarks/loader.py) is not in the number. Each configuration times two inputs in the same
process, their steps alternating so that both see the same machine load: pixels (the VAE encoder
runs in the step) and the latent cache (`data.latents`, built here by the cache job's own code with
the preset's VAE on the benchmark's device; no VAE in the step). Peak memory:
torch.cuda.max_memory_allocated on a GPU; on the CPU the process's peak RSS from the model build on
(VmHWM, reset just before) and how far it rose above the RSS at that moment (libraries loaded,
nothing built); the cache's is taken after its warm-up, which runs first and alone.

    python -m benchmarks.train_step                               # CPU: tiny preset, fp32
    python -m benchmarks.train_step --device cuda                 # GPU: sd15 preset, bf16, the paper's batches
    python -m benchmarks.train_step --device cuda --pretrained BASE   # real bases (hallo-weights fetch)

Without --pretrained the bases are random stand-ins at the preset's sizes; speed and memory do not
depend on the weights' values. For sd15 that is about 16 GB on disk in --work: 6 GB of bases and
10 GB of stage-2 starting weights (all five modules, 2.6B parameters, fp32).
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

from benchmarks.common import (DEFAULT_OUT, StageClock, annotation_overrides, measure, new_figure, print_table,
                               restart_peak_rss, status_mb, write_results)

PAPER_BATCH = {"stage1": 8, "stage2": 4}  # per GPU (HALLO_REFERENCE.md)
RESULT_PREFIX = "RESULT "
ROOT = Path(__file__).resolve().parents[1]


def prepare(work: Path, preset: str, pretrained: Optional[Path], device: str) -> dict[str, Any]:
    """Bases, stage 2's starting weights, one curated shard and its latent cache; written once per run."""
    from examples import fixtures
    from curation.config import CurationConfig
    from curation.pipeline import process_source
    from curation.sources import parse_source
    from model.presets import get_preset
    from model.pretrained import init_weights
    from examples.standins import write_standins
    from foundation.config import load_config

    base = pretrained or work / f"bases-{preset}"
    if pretrained is None:
        write_standins(get_preset(preset), base)
    init = work / "stage1-export"
    init_weights(base, get_preset(preset), init)
    cfg = load_config(CurationConfig, None, annotation_overrides(base))
    video = fixtures.generate("in_sync", work / "source.mp4", duration_s=4.0, size=(640, 480))
    rows = process_source(parse_source(str(video.path), work / "curated"), work / "curated", cfg)
    shards = sorted({str(work / "curated" / "shards" / r.shard) for r in rows if r.shard})
    if not shards:
        raise RuntimeError(f"the fixture clip was not accepted: {[r.reason for r in rows]}")
    return {"pretrained": str(base), "init_from": str(init), "shards": shards,
            "cache": str(cache_latents(shards, base / "vae", get_preset(preset).resolution, device, work / "latents"))}


def cache_latents(shards: list[str], vae: Path, resolution: int, device: str, out: Path) -> Path:
    """The latent cache of `shards`, written by the cache job's per-shard code (no Ray)."""
    from training.config import CacheEncodeConfig
    from training.latent_cache.encode import ClipEncoder, build_cache_shard

    encoder = ClipEncoder(CacheEncodeConfig(vae_dir=str(vae), resolution=resolution, device=device))
    for shard in shards:
        build_cache_shard(shard, out, encoder, encoder.identity, resolution)
    return out


def _stage_class(name: str) -> Any:
    if name == "stage1":
        from training.stage1 import Stage1

        return Stage1
    from training.stage2 import Stage2

    return Stage2


def run_config(spec: dict[str, Any]) -> dict[str, Any]:
    """One configuration in this process (the child): build once, then time `steps` steps of each input.

    The inputs' steps alternate (pixels, cache, pixels, ...), so both see the same machine load. The
    cache goes first alone for its warm-up, which gives its own peak memory; the pixel path's peak
    (it also runs the VAE encoder) is the one at the end.
    """
    import torch

    from foundation.config import load_config
    from training.config import TrainConfig
    from training.data import ShardStream
    from training.engine import build_engine, device_for, init_distributed
    from training.hallo_step import HalloTrainStep

    overrides = {
        "model.preset": spec["preset"], "model.pretrained_dir": spec["pretrained"], "model.init_from": spec["init_from"],
        "model.gradient_checkpointing": spec["checkpointing"], "run.precision": spec["precision"],
        "run.device": spec["device"], "run.batch_size": spec["batch"], "data.shards": json.dumps(spec["shards"]),
        "data.shuffle_buffer": 1,
    }
    cfg = load_config(TrainConfig, None, [f"{k}={v}" for k, v in overrides.items()])
    stage_class = _stage_class(spec["stage"])
    _, world, local_rank = init_distributed()
    device = device_for(cfg, local_rank)
    cuda = device.type == "cuda"
    rss_before = restart_peak_rss()  # libraries loaded, nothing built yet
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    stage = stage_class(cfg, device)
    engine = build_engine(stage.module, cfg, world)
    batches = {}
    for name in sorted(spec["inputs"]):  # "cache" first: its warm-up alone gives its peak memory
        cfg.data.latents = spec["cache"] if name == "cache" else None  # stage.cfg is cfg: its decoder follows
        batch = next(iter(ShardStream(cfg.data.shards, stage.decoder(), cfg.data, cfg.run.batch_size, cfg.run.seed)))
        batch.pop("reader_state")
        batches[name] = batch
    generator = torch.Generator(device="cpu").manual_seed(cfg.run.seed)

    def step(name: str) -> None:
        loss = engine(batches[name], generator)
        engine.backward(loss)
        engine.step()

    def peak_mb() -> float:
        return torch.cuda.max_memory_allocated(device) / 2**20 if cuda else status_mb("VmHWM")

    result = {
        **{k: spec[k] for k in ("stage", "preset", "device", "precision", "checkpointing", "batch")},
        "memory": "torch.cuda.max_memory_allocated" if cuda else "peak RSS (VmHWM) from the model build on",
        "trainable_params_m": sum(p.numel() for p in engine.module.parameters() if p.requires_grad) / 1e6,
        "attention": sorted({type(m.processor).__name__ for m in engine.module.net.modules() if hasattr(m, "processor")}),
    }
    inputs: dict[str, dict[str, Any]] = {}
    clock = StageClock(sync=torch.cuda.synchronize if cuda else None)
    try:
        for name in batches:
            for _ in range(spec["warmup"]):
                step(name)
            inputs[name] = {"peak_mb": peak_mb(), "peak_growth_mb": None if cuda else peak_mb() - rss_before}
        steps: dict[str, list[tuple[float, float]]] = {name: [] for name in batches}  # (wall s, VAE s) per step
        with clock.patched({"vae encode": [(HalloTrainStep, "encode")]}):
            for _ in range(spec["steps"]):
                for name in batches:
                    encoded = clock.seconds["vae encode"]
                    with measure() as timed, clock.stage(name):
                        step(name)
                    steps[name].append((timed.wall_s, clock.seconds["vae encode"] - encoded))
    except torch.cuda.OutOfMemoryError:  # a result too: this setting does not fit this GPU
        return {**result, "error": "CUDA out of memory", "peak_mb": peak_mb(), "inputs": inputs}
    for name, timed_steps in steps.items():
        # Medians: a step that the machine's other work stretched moves them least.
        step_s = statistics.median(wall for wall, _ in timed_steps)
        inputs[name].update(step_s=step_s, samples_per_s=spec["batch"] / step_s,
                            vae_encode_share=statistics.median(vae / wall for wall, vae in timed_steps))
    if "pixels" in inputs:
        inputs["pixels"].update(peak_mb=peak_mb(), peak_growth_mb=None if cuda else peak_mb() - rss_before)
    speedup = inputs["pixels"]["step_s"] / inputs["cache"]["step_s"] if len(inputs) == 2 else None
    return {**result, "inputs": inputs, "pixels_over_cache": speedup}


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """run_config in a fresh process, so each configuration's peak memory is its own."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.train_step", "--child", json.dumps(spec)],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode or not lines:
        raise RuntimeError(f"configuration {spec['stage']} checkpointing={spec['checkpointing']} failed "
                           f"(exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def figure(results: list[dict[str, Any]], setting: str) -> Any:
    rows = [(f"{r['stage']}, ckpt {'on' if r['checkpointing'] else 'off'}, {name}", measured)
            for r in results if "error" not in r for name, measured in r["inputs"].items()]
    fig, ax = new_figure(8, 0.5 + 0.45 * len(rows))
    labels = [label for label, _ in rows]
    encode = [m["step_s"] * m["vae_encode_share"] for _, m in rows]
    ax.barh(labels, encode, color="tab:orange", label="VAE encode")
    ax.barh(labels, [m["step_s"] - e for (_, m), e in zip(rows, encode)], left=encode, color="tab:blue",
            label="rest of the step")
    for i, (_, m) in enumerate(rows):
        ax.text(m["step_s"], i, f" {m['step_s']:.2f} s, {m['peak_mb']:.0f} MB", va="center", fontsize=8)
    ax.set_xlabel(f"seconds per step ({setting})")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Training step time by stage, gradient checkpointing and input (pixels or latent cache)")
    return fig


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when torch sees one")
    parser.add_argument("--preset", choices=("tiny", "sd15"), default=None, help="default: sd15 on cuda, tiny on cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default=None, help="default: bf16 on cuda, fp32 on cpu")
    parser.add_argument("--stages", default="stage1,stage2")
    parser.add_argument("--checkpointing", default="on,off", help="gradient checkpointing settings to run: on,off")
    parser.add_argument("--inputs", default="pixels,cache",
                        help="step inputs, timed alternately: pixels (VAE encoder in the step), cache (the latent cache)")
    parser.add_argument("--batch", type=int, default=0, help="samples per step; 0 = the paper's per-GPU batch on "
                        f"cuda {PAPER_BATCH}, 1 on cpu")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per configuration and input (the median counts)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--pretrained", type=Path, help="real bases folder (default: random stand-ins)")
    parser.add_argument("--work", type=Path, help="keep bases and shards here (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for train_step.json and train_step.png")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    import torch

    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.child:
        print(RESULT_PREFIX + json.dumps(run_config(json.loads(args.child))), flush=True)
        return {}
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    preset = args.preset or ("sd15" if device == "cuda" else "tiny")
    precision = args.precision or ("bf16" if device == "cuda" else "fp32")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        assets = prepare(work, preset, args.pretrained, device)
        results = [run_child({**assets, "stage": stage, "preset": preset, "device": device, "precision": precision,
                              "checkpointing": setting == "on", "inputs": args.inputs.split(","), "steps": args.steps,
                              "warmup": args.warmup, "batch": args.batch or (PAPER_BATCH[stage] if device == "cuda" else 1)})
                   for stage in args.stages.split(",") for setting in args.checkpointing.split(",")]
    print_table(f"Training steps ({preset}, {device}, {precision}; memory = {results[0]['memory']}; the inputs' "
                "steps alternate in one process)",
                ["stage", "checkpointing", "input", "batch", "s/step", "samples/s", "VAE encode share", "peak MB",
                 "growth MB", "trainable M"],
                [[r["stage"], "on" if r["checkpointing"] else "off", name, r["batch"], m.get("step_s", r.get("error")),
                  m.get("samples_per_s"), m.get("vae_encode_share"), m.get("peak_mb"), m.get("peak_growth_mb"),
                  r["trainable_params_m"]] for r in results for name, m in r["inputs"].items()])
    if any(r.get("pixels_over_cache") for r in results):
        print_table("Step time, pixels over latent cache (measured side by side in this run)",
                    ["stage", "checkpointing", "pixels / cache"],
                    [[r["stage"], "on" if r["checkpointing"] else "off", r.get("pixels_over_cache")] for r in results])
    print(f"attention processors: {', '.join(results[0]['attention'])}")
    payload = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "child"},
               "configs": results}
    json_path, png_path = write_results(args.out, "train_step", payload, figure(results, f"{preset}, {device}, {precision}"))
    print(f"\nwrote {json_path} and {png_path}")
    return payload


if __name__ == "__main__":
    main()
