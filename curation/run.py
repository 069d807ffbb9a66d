"""`python -m curation.run --source LIST --out DIR`: curate a list of talking videos on Ray."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from curation.config import CurationConfig
from curation.reasons import REASONS
from foundation.config import ConfigError, describe_markdown, load_config

log = logging.getLogger("curation")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m curation.run",
        description="Download, shot-cut, face-track, quality-filter and shard wild talking-head videos. "
        "Re-running the same command resumes: finished sources are skipped.",
        epilog="Reject reasons: " + ", ".join(REASONS),
    )
    parser.add_argument("--source", type=Path, help="text file: one URL or local path per line, '#' comments")
    parser.add_argument("--out", type=Path, default=Path("curated"), help="output folder (default: ./curated)")
    parser.add_argument("--config", type=Path, help="YAML file with config overrides")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set quality.min_face_px=128 (repeatable)")
    parser.add_argument("--address", help="Ray cluster address to join (default: start a local Ray)")
    parser.add_argument("--num-cpus", type=int, help="CPUs for the local Ray (default: all)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="also redo sources whose earlier outcome was failed (download_failed, crashes)")
    parser.add_argument("--print-config", action="store_true", help="print every config key with its default and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.print_config:
        print(describe_markdown(CurationConfig))
        return 0
    if args.source is None:
        print("error: --source LIST is required", file=sys.stderr)
        return 2
    # Heavy imports only after the argument checks; every start-up error is one line and exit 2.
    from curation.finish import preflight
    from curation.sources import parse_source_list

    try:
        cfg = load_config(CurationConfig, args.config, args.overrides)
        sources, unsupported = parse_source_list(args.source)
        cfg = preflight(cfg)  # missing model folders: one clear error now, not one per source later
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from orchestration.curation_job import init_ray, run_curation

    init_ray(args.address, args.num_cpus)
    summary = run_curation(sources, unsupported, args.out, cfg, retry_failed=args.retry_failed)
    print(json.dumps(summary, indent=2, sort_keys=True))
    log.info("manifest: %s, shards: %s", args.out / "manifest.parquet", args.out / "shards")
    return 0


if __name__ == "__main__":
    sys.exit(main())
