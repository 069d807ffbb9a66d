"""The Parquet manifest: what became of every source and every candidate clip.

Each finished source commits its rows as a part (curation.manifest_parts, written last and atomically, so
its presence means the source's shards are complete). The run merges the parts into
`manifest.parquet`, `summary.json` and `funnel.png` (curation.run_output).
"""
from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation import reasons
from foundation.storage import Location

MOTION_COLUMNS = ("picture_change", "face_motion", "mouth_motion")  # curation.motion

METRIC_COLUMNS = ("face_px", "sharpness", "brightness", "yaw_deg", "pitch_deg", "det_score", "landmark_presence",
                  "speech_ratio", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "sync_confidence", "sync_min_dist",
                  "language_prob", *MOTION_COLUMNS)
INT_COLUMNS = ("sync_offset",)
BOOL_COLUMNS = ("sync_verified", "vocals_separated")
# source geometry (per source) and crop honesty + balance (per clip judged by the quality step)
GEOMETRY_INT_COLUMNS = ("source_width", "source_height", "rotation_deg", "display_width", "display_height")
BALANCE_COLUMNS = ("yaw_range_deg", "pitch_range_deg", "roll_range_deg", "mouth_open_range")
GEOMETRY_FLOAT_COLUMNS = ("sample_aspect", "crop_outside_share", "roll_deg", *BALANCE_COLUMNS)
# fixed histogram bins of the balance columns (so runs compare); values past the last edge count in the last bin
BALANCE_BINS = {"yaw_range_deg": (0.0, 60.0, 12), "pitch_range_deg": (0.0, 60.0, 12),
                "roll_range_deg": (0.0, 60.0, 12), "mouth_open_range": (0.0, 0.6, 12)}
BALANCE_PERCENTILES = (5, 25, 50, 75, 95)


@dataclass
class ManifestRow:
    source: str
    source_id: str
    status: str  # accepted / rejected / failed
    clip_id: Optional[str] = None
    reason: Optional[str] = None
    detail: Optional[str] = None
    start_s: Optional[float] = None
    end_s: Optional[float] = None
    shard: Optional[str] = None
    source_duration_s: Optional[float] = None
    title: Optional[str] = None
    webpage_url: Optional[str] = None
    license: Optional[str] = None
    face_px: Optional[float] = None
    sharpness: Optional[float] = None
    brightness: Optional[float] = None
    yaw_deg: Optional[float] = None
    pitch_deg: Optional[float] = None
    det_score: Optional[float] = None
    landmark_presence: Optional[float] = None
    # motion (curation.motion): set for every clip that reached the quality step; picture_change also
    # for frozen stretches cut out as static_picture
    picture_change: Optional[float] = None  # mean grey-level change from frame to frame (64 px wide)
    face_motion: Optional[float] = None  # mean per-frame landmark movement, in outer eye-corner distances
    mouth_motion: Optional[float] = None  # spread of the mouth opening while speech is heard (same unit)
    # speech and lip-sync: set for every clip that passed the quality step (sync only if it had speech)
    speech_ratio: Optional[float] = None
    # the speech, DNSMOS, lip-sync and audio-feature steps heard separated vocals (false: the mixture)
    vocals_separated: Optional[bool] = None
    # DNSMOS P.835 of the vocals, 1 bad .. 5 excellent (clips with speech): overall, speech signal, background
    dnsmos_ovrl: Optional[float] = None
    dnsmos_sig: Optional[float] = None
    dnsmos_bak: Optional[float] = None
    sync_offset: Optional[int] = None  # frames the audio lagged the video; accepted clips are stored corrected
    sync_confidence: Optional[float] = None
    sync_min_dist: Optional[float] = None
    sync_backend: Optional[str] = None  # scorer that judged the clip: syncnet, or the weight-free envelope
    sync_verified: Optional[bool] = None  # the scorer confirmed the sync; false on kept clips = unverified
    # source geometry: the stored frames; boxes, face_px and crops are in display pixels (upright, square)
    source_width: Optional[int] = None
    source_height: Optional[int] = None
    sample_aspect: Optional[float] = None  # SAR of the stored pixels (1 = square)
    rotation_deg: Optional[int] = None  # counter-clockwise turn of the display matrix: 0, 90, 180, 270
    display_width: Optional[int] = None
    display_height: Optional[int] = None
    # quality step: invented (edge-replicated) share of the crop, and the clip's range of pose and mouth
    crop_outside_share: Optional[float] = None  # mean over frames of the crop area outside the frame
    roll_deg: Optional[float] = None  # median head roll, like yaw_deg / pitch_deg
    yaw_range_deg: Optional[float] = None  # p95 - p5 over the clip's frames
    pitch_range_deg: Optional[float] = None
    roll_range_deg: Optional[float] = None
    mouth_open_range: Optional[float] = None  # inner-lip gap / eye-corner distance, p95 - p5
    # spoken language (Whisper code) and its probability: clips with speech, when a language model is there
    language: Optional[str] = None
    language_prob: Optional[float] = None


_FLOAT_COLUMNS = {"start_s", "end_s", "source_duration_s", *METRIC_COLUMNS, *GEOMETRY_FLOAT_COLUMNS}


def _column_type(name: str) -> pa.DataType:
    if name in _FLOAT_COLUMNS:
        return pa.float64()
    return pa.int64() if name in (*INT_COLUMNS, *GEOMETRY_INT_COLUMNS) else pa.bool_() if name in BOOL_COLUMNS else pa.string()


SCHEMA = pa.schema([pa.field(f.name, _column_type(f.name)) for f in fields(ManifestRow)])


def status_for(reason: Optional[str]) -> str:
    if reason is None:
        return "accepted"
    return "failed" if reason in reasons.FAILED else "rejected"


def source_row(source: str, source_id: str, reason: str, detail: str = "", **extra: Any) -> ManifestRow:
    """The one row of a source that yielded no candidate clip."""
    return ManifestRow(source=source, source_id=source_id, status=status_for(reason), reason=reason,
                       detail=detail or None, **extra)


def encode_manifest(rows: list[ManifestRow], metadata: Optional[dict[Any, str]] = None) -> bytes:
    table = pa.Table.from_pylist([asdict(r) for r in rows], schema=SCHEMA)
    if metadata:
        table = table.replace_schema_metadata(metadata)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def sync_warning(rows: list[ManifestRow]) -> Optional[str]:
    """Said wherever results are shown when the weight-free fallback judged lip sync."""
    unverified = sum(r.status == "accepted" and r.sync_verified is False for r in rows)
    if not any(r.sync_backend == "envelope" for r in rows):
        return None
    return (f"lip sync judged without SyncNet weights (envelope fallback): {unverified} accepted clips are "
            "unverified; see README 'Lip-sync scores'")


def separation_warning(rows: list[ManifestRow]) -> Optional[str]:
    """Said wherever results are shown when clips were judged without vocal separation."""
    unseparated = sum(r.status == "accepted" and r.vocals_separated is False for r in rows)
    if not unseparated:
        return None
    return (f"{unseparated} accepted clips were judged and annotated without vocal separation (the mixture); "
            "see docs/curation.md 'Vocal separation'")


def warnings(rows: list[ManifestRow]) -> list[str]:
    return [w for w in (sync_warning(rows), separation_warning(rows)) if w]


UNKNOWN_LANGUAGE = "unknown"  # clips judged without a language model


def language_hours(rows: list[ManifestRow], accepted_only: bool) -> dict[str, float]:
    """Hours of clip per spoken language: accepted clips, or every clip with speech (the languages found
    before speech.languages filtered them)."""
    hours: Counter[str] = Counter()
    for r in rows:
        with_speech = r.speech_ratio is not None and r.reason != reasons.NO_SPEECH
        if r.clip_id is not None and (r.status == "accepted" if accepted_only else with_speech):
            hours[r.language or UNKNOWN_LANGUAGE] += ((r.end_s or 0) - (r.start_s or 0)) / 3600
    return dict(hours.most_common())


def summarize(rows: list[ManifestRow], wall_s: float) -> dict[str, Any]:
    clips = [r for r in rows if r.clip_id is not None]
    durations = {r.source_id: r.source_duration_s or 0.0 for r in rows}
    accepted = [r for r in clips if r.status == "accepted"]
    return {
        "sources": len(durations),
        "sources_with_accepted_clips": len({r.source_id for r in accepted}),
        "candidate_clips": len(clips),
        "accepted_clips": len(accepted),
        "accepted_unverified_sync": sum(r.sync_verified is False for r in accepted),
        "accepted_unseparated": sum(r.vocals_separated is False for r in accepted),
        "sync_backends": dict(Counter(r.sync_backend for r in clips if r.sync_backend)),
        "by_status": dict(Counter(r.status for r in rows)),
        "by_reason": dict(Counter(r.reason for r in rows if r.reason)),
        "hours_in": sum(durations.values()) / 3600,
        "hours_out": sum((r.end_s or 0) - (r.start_s or 0) for r in accepted) / 3600,
        "hours_by_language": language_hours(rows, accepted_only=True),
        "speech_hours_by_language": language_hours(rows, accepted_only=False),
        "wall_time_s": round(wall_s, 2),
        "warnings": warnings(rows),
        "balance": balance(accepted),
    }


def _balance_values(clips: list[ManifestRow], column: str) -> np.ndarray:
    values = np.array([getattr(r, column) for r in clips if getattr(r, column) is not None], np.float64)
    return values[np.isfinite(values)]


def balance(accepted: list[ManifestRow]) -> dict[str, dict[str, Any]]:
    """Per balance column, the accepted clips' distribution: percentiles and a fixed-bin histogram."""
    out: dict[str, dict[str, Any]] = {}
    for column, (low, high, bins) in BALANCE_BINS.items():
        values = _balance_values(accepted, column)
        counts, edges = np.histogram(np.clip(values, low, high), bins=bins, range=(low, high))
        out[column] = {
            "clips": int(values.size),
            **{f"p{q}": (round(float(np.percentile(values, q)), 4) if values.size else None)
               for q in BALANCE_PERCENTILES},
            "histogram": {"edges": [round(float(e), 4) for e in edges], "counts": counts.tolist()},
        }
    return out


def funnel_stages(rows: list[ManifestRow]) -> list[tuple[str, float]]:
    """Seconds of video left after each step: source -> decodable -> candidate clips -> good faces
    (reached the speech step) -> accepted (speech, in sync, annotated)."""
    source_s = {r.source_id: r.source_duration_s or 0.0 for r in rows}
    decoded = {r.source_id for r in rows if r.clip_id is not None}
    clips = [r for r in rows if r.clip_id is not None]

    def seconds(keep: Callable[[ManifestRow], bool]) -> float:
        return sum((r.end_s or 0) - (r.start_s or 0) for r in clips if keep(r))

    return [
        ("sources", sum(source_s.values())),
        ("decoded, with shots", sum(source_s[s] for s in decoded)),
        ("face segments", seconds(lambda r: True)),
        # a stretch left out by the speech screen has a speech_ratio but was never measured for motion
        ("passed face quality", seconds(lambda r: r.speech_ratio is not None and r.picture_change is not None)),
        ("accepted clips", seconds(lambda r: r.status == "accepted")),
    ]


def plot_funnel(rows: list[ManifestRow]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = funnel_stages(rows)
    reason_counts = Counter(r.reason for r in rows if r.reason)
    fig = plt.figure(figsize=(14, 7))
    grid = fig.add_gridspec(2, len(BALANCE_BINS) * 3, height_ratios=(4, 2.6))
    ax1, ax2, ax3 = (fig.add_subplot(grid[0, i * len(BALANCE_BINS):(i + 1) * len(BALANCE_BINS)]) for i in range(3))
    ax1.barh([s for s, _ in stages][::-1], [v / 60 for _, v in stages][::-1], color="#3b7dd8")
    ax1.set_xlabel("minutes of video")
    ax1.set_title("Curation funnel")
    if reason_counts:
        names, counts = zip(*reason_counts.most_common())
        ax2.barh(names[::-1], counts[::-1], color="#d8613b")
    ax2.set_xlabel("rows")
    ax2.set_title("Why rows were dropped")
    plot_languages(ax3, rows)
    accepted = [r for r in rows if r.status == "accepted" and r.clip_id is not None]
    for i, (column, (low, high, bins)) in enumerate(BALANCE_BINS.items()):
        ax = fig.add_subplot(grid[1, i * 3:(i + 1) * 3])
        ax.hist(np.clip(_balance_values(accepted, column), low, high), bins=bins, range=(low, high), color="#5a9e4b")
        ax.set_title(f"{column} (p5..p95)", fontsize=9)
        ax.set_ylabel("accepted clips" if i == 0 else "")
    shown = warnings(rows)
    fig.tight_layout(rect=(0, 0.035 + 0.035 * len(shown), 1, 1) if shown else (0, 0, 1, 1))
    for i, warning in enumerate(shown):
        fig.text(0.01, 0.015 + 0.04 * i, "WARNING: " + warning, color="#b00020", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def plot_languages(ax: Any, rows: list[ManifestRow]) -> None:
    """Minutes of speech per spoken language: found (clips with speech) and accepted."""
    found, accepted = language_hours(rows, accepted_only=False), language_hours(rows, accepted_only=True)
    names = list(found)[::-1]
    ax.barh(names, [found[n] * 60 for n in names], color="#b8c7e0", label="with speech")
    ax.barh(names, [accepted.get(n, 0.0) * 60 for n in names], color="#3b7dd8", label="accepted")
    ax.set_xlabel("minutes of clips")
    ax.set_title("Spoken language")
    if names:
        ax.legend(loc="lower right", fontsize=8)


def finalize(location: Location, rows: list[ManifestRow], wall_s: float, extra: Optional[dict[str, Any]] = None,
             metadata: Optional[dict[Any, str]] = None) -> dict[str, Any]:
    """Write manifest.parquet, summary.json (with `extra` merged in) and funnel.png for the whole run."""
    rows = sorted(rows, key=lambda r: (r.source_id, r.start_s or -1.0, r.clip_id or ""))
    location.write_bytes("manifest.parquet", encode_manifest(rows, metadata))
    summary = {**summarize(rows, wall_s), **(extra or {})}
    location.write_bytes("summary.json", json.dumps(summary, indent=2, sort_keys=True).encode())
    location.write_bytes("funnel.png", plot_funnel(rows))
    return summary
