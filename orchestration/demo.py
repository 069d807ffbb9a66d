"""`make demo`: the whole job on the embedded default (bundled real face photos and speech, CPU).

1. Generate sample talking clips (and broken inputs) from the bundled media.
2. Curate them with `curation.run` on a local Ray into shards + manifest.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from curation import fixtures
from curation import run as curation_run

log = logging.getLogger("demo")


def write_source_list(media: list[Path], path: Path) -> Path:
    lines = ["# Demo sources: generated talking clips and broken inputs (see curation/fixtures.py)"]
    lines += [str(p.resolve()) for p in media]
    lines += ["ftp://example.invalid/not-supported.mp4  # shows the unsupported_source reason"]
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo_out"))
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    media_dir = args.out / "media"
    infos = fixtures.generate_all(media_dir)
    log.info("generated %d sample sources in %s", len(infos), media_dir)
    source_list = write_source_list([info.path for info in infos], args.out / "sources.txt")
    code = curation_run.main(["--source", str(source_list), "--out", str(args.out / "curated"),
                              "--num-cpus", str(args.num_cpus)])
    if code == 0:
        log.info("demo done: see %s/curated/{manifest.parquet,summary.json,funnel.png,shards/}", args.out)
    return code


if __name__ == "__main__":
    sys.exit(main())
