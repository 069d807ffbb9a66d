"""The Parquet manifest: what became of every source and every candidate clip.

Each finished source commits its rows as a part (curation.parts, written last and atomically, so
its presence means the source's shards are complete). The run merges the parts into
`manifest.parquet`, `summary.json` and `funnel.png` (curation.settle).
"""
from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from curation import reasons
from foundation.storage import Location

METRIC_COLUMNS = ("face_px", "sharpness", "brightness", "yaw_deg", "pitch_deg", "det_score", "landmark_presence",
                  "speech_ratio", "sync_confidence", "sync_min_dist", "language_prob")
INT_COLUMNS = ("sync_offset",)
BOOL_COLUMNS = ("sync_verified",)


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
    # speech and lip-sync: set for every clip that passed the quality step (sync only if it had speech)
    speech_ratio: Optional[float] = None
    sync_offset: Optional[int] = None  # frames the audio lagged the video; accepted clips are stored corrected
    sync_confidence: Optional[float] = None
    sync_min_dist: Optional[float] = None
    sync_backend: Optional[str] = None  # scorer that judged the clip: syncnet, or the weight-free envelope
    sync_verified: Optional[bool] = None  # the scorer confirmed the sync; false on kept clips = unverified
    # spoken language (Whisper code) and its probability: clips with speech, when a language model is there
    language: Optional[str] = None
    language_prob: Optional[float] = None


_FLOAT_COLUMNS = {"start_s", "end_s", "source_duration_s", *METRIC_COLUMNS}


def _column_type(name: str) -> pa.DataType:
    if name in _FLOAT_COLUMNS:
        return pa.float64()
    return pa.int64() if name in INT_COLUMNS else pa.bool_() if name in BOOL_COLUMNS else pa.string()


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
    warning = sync_warning(rows)
    return {
        "sources": len(durations),
        "sources_with_accepted_clips": len({r.source_id for r in accepted}),
        "candidate_clips": len(clips),
        "accepted_clips": len(accepted),
        "accepted_unverified_sync": sum(r.sync_verified is False for r in accepted),
        "sync_backends": dict(Counter(r.sync_backend for r in clips if r.sync_backend)),
        "by_status": dict(Counter(r.status for r in rows)),
        "by_reason": dict(Counter(r.reason for r in rows if r.reason)),
        "hours_in": sum(durations.values()) / 3600,
        "hours_out": sum((r.end_s or 0) - (r.start_s or 0) for r in accepted) / 3600,
        "hours_by_language": language_hours(rows, accepted_only=True),
        "speech_hours_by_language": language_hours(rows, accepted_only=False),
        "wall_time_s": round(wall_s, 2),
        "warnings": [warning] if warning else [],
    }


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
        ("passed face quality", seconds(lambda r: r.speech_ratio is not None)),
        ("accepted clips", seconds(lambda r: r.status == "accepted")),
    ]


def plot_funnel(rows: list[ManifestRow]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = funnel_stages(rows)
    reason_counts = Counter(r.reason for r in rows if r.reason)
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4))
    ax1.barh([s for s, _ in stages][::-1], [v / 60 for _, v in stages][::-1], color="#3b7dd8")
    ax1.set_xlabel("minutes of video")
    ax1.set_title("Curation funnel")
    if reason_counts:
        names, counts = zip(*reason_counts.most_common())
        ax2.barh(names[::-1], counts[::-1], color="#d8613b")
    ax2.set_xlabel("rows")
    ax2.set_title("Why rows were dropped")
    plot_languages(ax3, rows)
    warning = sync_warning(rows)
    fig.tight_layout(rect=(0, 0.07, 1, 1) if warning else (0, 0, 1, 1))
    if warning:
        fig.text(0.01, 0.015, "WARNING: " + warning, color="#b00020", fontsize=9)
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
