"""`make demo`: the whole job on the embedded default (bundled real face photos and speech, CPU, tiny model).

1. Generate sample talking clips (and broken inputs) from the bundled media.
2. Write tiny stand-ins of the pretrained bases (`python -m examples.standins`: random, but for a
   tiny VAE trained on the bundled media).
3. Curate the samples with `curation.run` on a local Ray into annotated shards + manifest.
4. Cache the curated clips' VAE latents (`training.latent_cache`): training then decodes no video.
5. Train stage 1, then stage 2 on the cached clips (`hallo-train stage{1,2} --config configs/learn/...`),
   long enough for the tiny model to learn them.
6. Show that it learned: generate the curated `in_sync` clip back from its first frame and its audio,
   with the trained and with untrained weights, and print their PSNR against the real clip.
7. Generate a talking video from a bundled photo and a speech clip with the trained weights.
"""
from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

from foundation.project import configs_dir
from model.presets import get_preset

log = logging.getLogger("demo")
ROOT = Path(__file__).resolve().parents[1]


def write_source_list(media: list[Path], path: Path) -> Path:
    lines = ["# Demo sources: generated talking clips and broken inputs (see examples/fixtures.py)"]
    lines += [str(p.resolve()) for p in media]
    lines += ["ftp://example.invalid/not-supported.mp4  # shows the unsupported_source reason"]
    path.write_text("\n".join(lines) + "\n")
    return path


def run(cmd: list[str]) -> None:
    log.info("$ %s", " ".join(cmd))
    subprocess.run(cmd, cwd=ROOT, check=True)


def train(stage: str, out: Path, base: Path, extra: list[str], run_name: str = "") -> Path:
    """Train `stage` on out/curated's shards and out/latents into out/runs/RUN_NAME (default: the stage's name)."""
    run_dir = out / "runs" / (run_name or stage)
    sets = {"data.shards": f"[{out / 'curated' / 'shards' / '*.tar'}]", "data.latents": str(out / "latents"),
            "model.pretrained_dir": str(base), "run.output_dir": str(run_dir)}
    args = [a for key, value in sets.items() for a in ("--set", f"{key}={value}")]
    run([sys.executable, "-m", f"training.{stage}", "--config", str(configs_dir() / "learn" / f"{stage}.yaml"),
         *args, *extra])
    return run_dir / "export"


def learning_check(out: Path, base: Path, trained: Path, steps: int) -> None:
    """Generate the curated in_sync clip from its first frame and audio; log PSNR against the real clip."""
    import pyarrow.parquet as pq

    from model.pretrained import init_weights
    from examples.learning import RealClip, generate

    rows = pq.read_table(out / "curated" / "manifest.parquet").to_pylist()
    row = next(r for r in rows if r["status"] == "accepted" and Path(r["source"]).name == "in_sync.mp4")
    preset = get_preset("tiny")
    real = RealClip.from_shards([str(out / "curated" / "shards" / row["shard"])], preset.resolution, row["clip_id"])
    folder = out / "learning"
    image, audio = real.write_inputs(folder)
    untrained = folder / "untrained_weights"
    init_weights(base, preset, untrained)
    results = {}
    for stem, weights, scale in (("trained", trained, "3.5"), ("trained", trained, "1"), ("untrained", untrained, "3.5")):
        video = generate(weights, image, audio, folder / f"{stem}_cfg{scale}.mp4", "--sampler", "ddim", "--steps",
                         str(steps), "--guidance-scale", scale)
        results[f"{stem}, cfg {scale}"] = real.compare(video)
    results["first frame repeated"] = real.compare(real.still())
    log.info("6/7 the curated clip %s (%d frames) generated back from its first frame and its audio, "
             "against the real clip:\n%s", row["clip_id"], len(real.frames),
             "\n".join(f"  {name:<21} {match}" for name, match in results.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo_out"))
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps of the demo's generations")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    out = args.out.resolve()
    from examples import fixtures  # the work's modules load after the arguments are parsed: `--help` is quick
    from curation import run as curation_run
    from examples.standins import write_standins

    infos = fixtures.generate_all(out / "media")
    log.info("1/7 generated %d sample sources in %s", len(infos), out / "media")
    base = out / "pretrained"
    write_standins(get_preset("tiny"), base)
    log.info("2/7 tiny stand-ins of the pretrained bases in %s", base)
    source_list = write_source_list([info.path for info in infos], out / "sources.txt")
    code = curation_run.main([
        "--source", str(source_list), "--out", str(out / "curated"), "--num-cpus", str(args.num_cpus),
        "--set", f"annotations.wav2vec2_dir={base / 'wav2vec2'}",
        "--set", f"annotations.insightface_dir={base / 'insightface' / 'models'}",
        "--set", f"faces.output_size={2 * get_preset('tiny').resolution}",  # the tiny model trains at 64 px
    ])
    if code != 0:
        return code
    log.info("3/7 curated: %s/curated/{manifest.parquet,summary.json,funnel.png,shards/}", out)
    run([sys.executable, "-m", "training.latent_cache", "--shards", str(out / "curated" / "shards" / "*.tar"),
         "--out", str(out / "latents"), "--num-cpus", str(args.num_cpus), "--set", f"encode.vae_dir={base / 'vae'}",
         "--set", f"encode.resolution={get_preset('tiny').resolution}"])
    log.info("4/7 latents of the curated clips in %s", out / "latents")
    stage1 = train("stage1", out, base, [])
    log.info("5/7 stage 1 weights in %s", stage1)
    stage2 = train("stage2", out, base, ["--set", f"model.init_from={stage1}"])
    log.info("5/7 stage 2 weights in %s", stage2)
    learning_check(out, base, stage2, args.steps)
    video = out / "generated.mp4"
    photo, speech = fixtures.ASSETS / "astronaut.jpg", fixtures.ASSETS / "speech_0930.wav"  # the face most of the clips show
    run([sys.executable, "-m", "model.generate", "--weights", str(stage2), "--image", str(photo),
         "--audio", str(speech), "--out", str(video), "--sampler", "ddim", "--steps", str(args.steps)])
    log.info("7/7 generated %s from %s and %s", video, photo, speech)
    return 0


if __name__ == "__main__":
    sys.exit(main())
