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
    parser.add_argument("--source", help="text file (a local path or an object URL such as s3://bucket/list.txt): "
                                           "one URL or local path per line, '#' comments")
    parser.add_argument("--out", default="curated",
                        help="output folder, or an object store prefix such as s3://bucket/curated (default: ./curated)")
    parser.add_argument("--config", type=Path, help="YAML file with config overrides")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set quality.min_face_px=128 (repeatable)")
    parser.add_argument("--address", help="Ray cluster address to join (default: start a local Ray)")
    parser.add_argument("--num-cpus", type=int, help="CPUs for the local Ray (default: all)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="also redo sources whose earlier outcome was failed (download_failed, crashes)")
    parser.add_argument("--reprocess", action="store_true",
                        help="redo the sources that --out holds under a config with other results (without it such a "
                             "run exits 2 naming the changed keys); sources made with this config are kept")
    parser.add_argument("--allow-empty", action="store_true",
                        help="exit 0 even when no source gave a single candidate clip (every source failed to download "
                             "or decode, or showed no face); without it such a run exits 1")
    parser.add_argument("--print-config", action="store_true", help="print every config key with its default and exit")
    return parser


def summary_text(summary: dict) -> str:
    """The summary for a reader: what went in, what came out, why the rest did not."""
    by_reason = sorted(summary["by_reason"].items(), key=lambda item: -item[1])
    lines = [
        f"curated {summary['sources']} source(s), {summary['hours_in'] * 60:.1f} min of video, in "
        f"{summary['wall_time_s']:.0f} s: {summary['accepted_clips']} of {summary['candidate_clips']} candidate clip(s) "
        f"accepted ({summary['hours_out'] * 60:.1f} min) from {summary['sources_with_accepted_clips']} source(s)",
        "  rows by reason: " + (", ".join(f"{reason} {count}" for reason, count in by_reason) or "none"),
        *(f"  warning: {warning}" for warning in summary["warnings"]),
    ]
    return "\n".join(lines)


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
    from curation.speech_sync_annotate import preflight
    from curation.review import REVIEW_PAGE
    from curation.run_output import ConfigChanged, plan_run
    from curation.sources import SourceListError, parse_source_list
    from foundation.storage import Location, StorageError

    try:
        cfg = load_config(CurationConfig, args.config, args.overrides)
        sources, unsupported = parse_source_list(args.source)
        if not sources and not unsupported:
            raise SourceListError(f"source list {args.source} has no entries (one URL or path per line)")
        cfg = preflight(cfg)  # missing model folders: one clear error now, not one per source later
        out = Location(args.out)
        out.ensure_writable()
        plan = plan_run(out, sources, cfg, retry_failed=args.retry_failed, reprocess=args.reprocess)
    except (ConfigError, FileNotFoundError, SourceListError, StorageError, ConfigChanged) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from orchestration.curation_job import run_curation
    from orchestration.ray_setup import init_ray, shutdown_ray

    try:
        summary = run_curation(sources, unsupported, out, cfg, plan, connect=lambda: init_ray(args.address, args.num_cpus))
    finally:
        shutdown_ray()  # main() may run inside a longer process (make demo): its idle workers would hold cores and memory
    print(json.dumps(summary, indent=2, sort_keys=True))
    log.info("%s\nmanifest: %s, shards: %s, funnel: %s", summary_text(summary), out.uri("manifest.parquet"),
             out.uri("shards"), out.uri("funnel.png"))
    if cfg.review.enabled:
        log.info("review page: %s (open it in a browser; it links ../previews and ../funnel.png)", out.uri(REVIEW_PAGE))
    if summary["candidate_clips"] == 0 and not args.allow_empty:
        print(f"error: no source gave a single candidate clip (rows by reason: {summary['by_reason']}); see "
              f"{out.uri('manifest.parquet')}, or pass --allow-empty when that is expected", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
