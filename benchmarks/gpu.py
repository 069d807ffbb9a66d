"""One GPU check for a short loan: generation per sampling schedule, a stage-1 and a stage-2 training step
and the latent cache, at the paper's size, in one table beside Hallo's published figures.

    python -m benchmarks.gpu                                  # one GPU: sd15 at 512 px, random weights (~8 min)
    python -m benchmarks.gpu --device cpu --preset tiny       # the same code on CPU (tests/test_benchmarks.py)

Everything here is another benchmark's code, run once at small counts: the bases, the starting weights,
the curated fixture shard and its latent cache come from benchmarks/train_step.prepare (the cache job's
own code, timed here), generation from benchmarks/generate.run_schedules (the pipeline as
`python -m model.generate` prepares it; random weights, so speed and memory only), the training steps
from benchmarks/train_step.run_child (the real stage classes and DeepSpeed engine, each in its own
process; bf16 and gradient checkpointing on a GPU). So the GPU run is the only new thing: the CPU run
of the test suite has already run every line.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Any, Optional

from benchmarks import train_step
from benchmarks.common import DEFAULT_OUT, StageClock, measure, new_figure, print_table, write_results
from benchmarks.generate import HALLO_PAPER, run_schedules, speech

ASSETS = Path(__file__).resolve().parents[1] / "examples" / "assets"

log = logging.getLogger(__name__)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    parser.add_argument("--preset", choices=("tiny", "sd15"), help="default: sd15 on cuda, tiny on cpu")
    parser.add_argument("--schedules", default="hallo,balanced,fast", help="generation schedules (benchmarks/generate.py)")
    parser.add_argument("--frames", type=int, default=16, help="frames to generate per schedule (16: one sd15 clip)")
    parser.add_argument("--stages", default="stage1,stage2")
    parser.add_argument("--steps", type=int, default=2, help="timed training steps per stage and input")
    parser.add_argument("--work", type=Path, help="keep bases, weights and shards here (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for gpu.json and gpu.png")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    import torch

    from model.generate_config import GenerateConfig

    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda, but torch sees no GPU (run with --device cpu --preset tiny)")
    preset = args.preset or ("sd15" if args.device == "cuda" else "tiny")
    cuda = args.device == "cuda"
    precision = "bf16" if cuda else "fp32"
    clock = StageClock(sync=torch.cuda.synchronize if cuda else None)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        with measure() as setup, clock.patched({"latent cache": [(train_step, "cache_latents")]}):
            assets = train_step.prepare(work, preset, None, args.device)
        cfg = GenerateConfig(weights=assets["init_from"], image=str(ASSETS / "astronaut.jpg"),
                             audio=str(speech(work / "speech.wav", args.frames)), out=str(work / "unused.mp4"),
                             device=args.device, progress=False, allow_no_face=True)
        generation = run_schedules(cfg, args.schedules.split(","))
        training = [train_step.run_child({**assets, "stage": stage, "preset": preset, "device": args.device,
                                          "precision": precision, "checkpointing": True, "inputs": ["pixels", "cache"],
                                          "steps": args.steps, "warmup": 1,
                                          "batch": train_step.PAPER_BATCH[stage] if cuda else 1})
                    for stage in args.stages.split(",")]
    cache_s = clock.seconds["latent cache"]
    rows: list[list[Any]] = [[f"generate {r['schedule']} ({r['sampler']} x {r['steps']}, {r['guided_steps']} guided)",
                              f"{r['s_per_frame']:.3f} s/frame", f"{r['passes_per_frame']:.2f} passes/frame",
                              r["peak_mb"] / 1024, "-"] for r in generation]
    rows.append(["Hallo's paper (40 DDIM steps, every step guided)", f"{HALLO_PAPER['s_per_frame']} s/frame",
                 "5.00 passes/frame", HALLO_PAPER["memory_gb"], f"{HALLO_PAPER['gpu']}, {HALLO_PAPER['resolution']} px"])
    for t in training:
        for name, m in t["inputs"].items():
            rows.append([f"train {t['stage']} step ({name}, batch {t['batch']}, {t['precision']}, checkpointing)",
                         f"{m.get('step_s', float('nan')):.3f} s/step", f"{m.get('samples_per_s', 0):.2f} samples/s",
                         m["peak_mb"] / 1024, t.get("error", "-")])
    rows.append(["latent cache of the fixture shard (VAE encode + write)", f"{cache_s:.2f} s", "-", None, "-"])
    gpu = torch.cuda.get_device_name(0) if cuda else "cpu"
    print_table(f"GPU check: {preset}, {args.device} ({gpu}); set-up {setup.wall_s:.0f} s; memory: "
                f"{'max_memory_allocated' if cuda else 'peak RSS'}", ["what", "time", "rate", "peak GB", "note"], rows)
    payload = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "preset": preset, "precision": precision, "setup_s": setup.wall_s, "latent_cache_s": cache_s,
               "generation": generation, "training": training, "hallo_paper": HALLO_PAPER}
    fig, ax = new_figure(7, 3)
    ax.barh([r["schedule"] for r in generation] + ["Hallo paper"],
            [r["s_per_frame"] for r in generation] + [HALLO_PAPER["s_per_frame"]], color="tab:blue")
    ax.set_xlabel(f"seconds per output frame ({preset}, {gpu})")
    json_path, png_path = write_results(args.out, "gpu", payload, fig)
    print(f"\nwrote {json_path} and {png_path}")
    return payload


if __name__ == "__main__":
    main()
