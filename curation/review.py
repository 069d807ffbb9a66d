"""`python -m curation.review --out DIR`: the review page of a curation output, `DIR/review/index.html`.

One static page, no server: the run's numbers and funnel figure, then a section for the accepted
clips and one for each reason present in the manifest, each with the preview strips of a sample of
its clips (captured during curation, curation.previews) and a table of its manifest rows; every
strip links to its row (`#clip-<clip_id>`), rows of sources rejected before any frame was decoded
have no strip. Links are relative (`../previews/...`, `../funnel.png`), so the page works wherever
DIR is copied or synced. finalize_output writes it at the end of every run (review.enabled).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import jinja2

from curation import reasons
from curation.config import CurationConfig, ReviewConfig
from curation.manifest import INT_COLUMNS, METRIC_COLUMNS, ManifestRow, warnings
from curation.manifest_parts import decode_part
from curation.previews import PREVIEW_DIR, preview_name
from foundation.config import ConfigError, load_config
from foundation.storage import Location, StorageError

log = logging.getLogger(__name__)

REVIEW_PAGE = "review/index.html"
ACCEPTED = "accepted"
_TEMPLATE = Path(__file__).parent / "templates" / "review.html.j2"
# The metrics each quality or sync reason is decided on: highlighted in its section.
_DECIDING = {
    reasons.NO_FACE: ("landmark_presence",), reasons.FACE_TOO_SMALL: ("face_px",), reasons.BLURRY: ("sharpness",),
    reasons.TOO_DARK: ("brightness",), reasons.OVEREXPOSED: ("brightness",),
    reasons.EXTREME_POSE: ("yaw_deg", "pitch_deg"), reasons.NO_SPEECH: ("speech_ratio",),
    reasons.OUT_OF_SYNC: ("sync_confidence", "sync_offset"), reasons.CROP_OFF_FRAME: ("crop_outside_share",),
    reasons.POOR_AUDIO: ("dnsmos_ovrl",),
}
_SHOWN = (*METRIC_COLUMNS, "crop_outside_share", *INT_COLUMNS)


@dataclass
class Entry:
    """One manifest row as the page shows it."""

    index: int  # row number in manifest.parquet
    row: ManifestRow
    anchor: str
    label: str  # the source's title, else its file name (the full source is the label's tooltip)
    preview: Optional[str]  # relative URL of its strip, None without one
    metrics: dict[str, str]  # column -> formatted value, measured columns only


@dataclass
class Section:
    key: str  # `accepted` or a reason code
    meaning: str
    status: str
    total: int
    sources: int
    seconds: float
    deciding: tuple[str, ...]
    cards: list[Entry] = field(default_factory=list)
    listed: list[Entry] = field(default_factory=list)


def _format(value: Any) -> Optional[str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value) if isinstance(value, int) else f"{value:.3g}" if abs(value) < 10 else f"{value:.0f}"


def _entry(index: int, row: ManifestRow, previews: set[str]) -> Entry:
    anchor = f"clip-{row.clip_id}" if row.clip_id else f"source-{row.source_id}"
    has_preview = row.clip_id is not None and preview_name(row.clip_id) in previews
    preview = f"../{PREVIEW_DIR}/{preview_name(row.clip_id)}" if has_preview and row.clip_id else None
    metrics = {name: text for name in _SHOWN if (text := _format(getattr(row, name))) is not None}
    label = row.title or row.source.rstrip("/").rsplit("/", 1)[-1]
    return Entry(index, row, anchor, label, preview, metrics)


def _spread(entries: list[Entry], limit: int) -> list[Entry]:
    """Up to `limit` entries, one per source in turn, so one long source does not fill a section."""
    by_source: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        by_source[entry.row.source_id].append(entry)
    picked: list[Entry] = []
    for depth in range(max(map(len, by_source.values()), default=0)):
        picked += [group[depth] for group in by_source.values() if depth < len(group)]
    return sorted(picked[:limit], key=lambda e: e.index)


def build_sections(rows: list[ManifestRow], previews: set[str], cfg: ReviewConfig) -> list[Section]:
    """The accepted section, then one per reason in the manifest, in the order of curation.reasons."""
    grouped: dict[str, list[Entry]] = defaultdict(list)
    for index, row in enumerate(rows):
        grouped[row.reason or ACCEPTED].append(_entry(index, row, previews))
    order = [ACCEPTED, *reasons.REASONS, *sorted(set(grouped) - {ACCEPTED, *reasons.REASONS})]
    sections = []
    for key in (k for k in order if k in grouped):
        entries = grouped[key]
        cards = _spread([e for e in entries if e.preview], cfg.page_clips)
        shown = {e.index for e in cards}
        rest = [e for e in entries if e.index not in shown][:max(0, cfg.page_rows - len(cards))]
        sections.append(Section(
            key=key, meaning=reasons.REASONS.get(key, "clips that passed every step" if key == ACCEPTED else ""),
            status=entries[0].row.status, total=len(entries), sources=len({e.row.source_id for e in entries}),
            seconds=sum((e.row.end_s or 0) - (e.row.start_s or 0) for e in entries), deciding=_DECIDING.get(key, ()),
            cards=cards, listed=sorted(cards + rest, key=lambda e: e.index),
        ))
    return sections


def render_page(rows: list[ManifestRow], summary: dict[str, Any], previews: set[str], cfg: ReviewConfig,
                title: str) -> str:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(_TEMPLATE.read_text())
    return template.render(title=title, summary=summary, sections=build_sections(rows, previews, cfg),
                           warnings=summary.get("warnings") or warnings(rows), columns=_SHOWN)


def write_review(location: Location, cfg: ReviewConfig) -> str:
    """Read DIR's manifest, summary and preview listing, write the page; returns where it is.

    FileNotFoundError when DIR holds no finished run (no manifest.parquet).
    """
    names = set(location.list(""))
    if "manifest.parquet" not in names:
        raise FileNotFoundError(f"{location.uri()} holds no manifest.parquet (run python -m curation.run first)")
    wanted = ["manifest.parquet", *(["summary.json"] if "summary.json" in names else [])]
    data = location.read_many(wanted)
    rows, _ = decode_part(data["manifest.parquet"])  # the manifest has the parts' schema
    summary = json.loads(data["summary.json"]) if "summary.json" in data else {}
    page = render_page(rows, summary, set(location.list(PREVIEW_DIR)), cfg, location.uri())
    location.write_bytes(REVIEW_PAGE, page.encode())
    log.info("review page: %s", location.uri(REVIEW_PAGE))
    return location.uri(REVIEW_PAGE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m curation.review",
                                     description="Write DIR/review/index.html for a finished curation output.")
    parser.add_argument("--out", required=True, help="the curation output: a folder or an object URL such as "
                                                     "s3://bucket/curated")
    parser.add_argument("--config", type=Path, help="YAML file with config overrides (the review section is used)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set review.page_clips=60 (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        cfg = load_config(CurationConfig, args.config, args.overrides)
        print(write_review(Location(args.out), cfg.review))
    except (ConfigError, FileNotFoundError, StorageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
