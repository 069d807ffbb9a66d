"""`make demo`: the whole job on the embedded default (bundled real face photos and speech, CPU, tiny model).

1. Generate sample talking clips (and broken inputs) from the bundled media.
2. Write tiny random stand-ins of the pretrained bases (`python -m model.pretrained tiny`).
3. Curate the samples with `curation.run` on a local Ray into annotated shards + manifest.
4. Train stage 1, then stage 2, a few steps each (`training/stage1.py`, `training/stage2.py`).
5. Generate a talking video from a photo and a speech clip with the trained weights.
"""
from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

from curation import fixtures
from curation import run as curation_run
from model.presets import get_preset
from model.standins import write_standins

log = logging.getLogger("demo")
ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "curation" / "assets"


def write_source_list(media: list[Path], path: Path) -> Path:
    lines = ["# Demo sources: generated talking clips and broken inputs (see curation/fixtures.py)"]
    lines += [str(p.resolve()) for p in media]
    lines += ["ftp://example.invalid/not-supported.mp4  # shows the unsupported_source reason"]
    path.write_text("\n".join(lines) + "\n")
    return path


def run(cmd: list[str]) -> None:
    log.info("$ %s", " ".join(cmd))
    subprocess.run(cmd, cwd=ROOT, check=True)


def train(stage: str, out: Path, base: Path, extra: list[str]) -> Path:
    run_dir = out / "runs" / stage
    sets = {"data.shards": f"[{out / 'curated' / 'shards' / '*.tar'}]", "model.pretrained_dir": str(base),
            "run.output_dir": str(run_dir)}
    args = [a for key, value in sets.items() for a in ("--set", f"{key}={value}")]
    run([sys.executable, str(ROOT / "training" / f"{stage}.py"), "--config",
         str(ROOT / "configs" / "demo" / f"{stage}.yaml"), *args, *extra])
    return run_dir / "export"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo_out"))
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    out = args.out.resolve()

    infos = fixtures.generate_all(out / "media")
    log.info("1/5 generated %d sample sources in %s", len(infos), out / "media")
    base = out / "pretrained"
    write_standins(get_preset("tiny"), base)
    log.info("2/5 tiny stand-ins of the pretrained bases in %s", base)
    source_list = write_source_list([info.path for info in infos], out / "sources.txt")
    code = curation_run.main([
        "--source", str(source_list), "--out", str(out / "curated"), "--num-cpus", str(args.num_cpus),
        "--set", f"annotations.wav2vec2_dir={base / 'wav2vec2'}",
        "--set", f"annotations.insightface_dir={base / 'insightface' / 'models'}",
    ])
    if code != 0:
        return code
    log.info("3/5 curated: %s/curated/{manifest.parquet,summary.json,funnel.png,shards/}", out)
    stage1 = train("stage1", out, base, [])
    log.info("4/5 stage 1 weights in %s", stage1)
    stage2 = train("stage2", out, base, ["--set", f"model.init_from={stage1}"])
    log.info("4/5 stage 2 weights in %s", stage2)
    video = out / "generated.mp4"
    run([sys.executable, "-m", "model.generate", "--weights", str(stage2), "--image", str(ASSETS / "grace_hopper.jpg"),
         "--audio", str(ASSETS / "speech_0930.wav"), "--out", str(video), "--steps", "2"])
    log.info("5/5 generated %s from %s and %s", video, ASSETS / "grace_hopper.jpg", ASSETS / "speech_0930.wav")
    return 0


if __name__ == "__main__":
    sys.exit(main())
