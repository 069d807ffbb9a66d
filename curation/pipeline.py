"""One source through the whole data path; plain function, no Ray (orchestration schedules it).

sources -> download -> media -> audio + screen (speech from the audio alone, a sparse face probe:
cheap rejects) -> scenes + faces + frame quality + picture change (one low-resolution decode, over
the stretches the screen kept) -> clips (split at cuts and frozen stretches, judge quality and
motion) -> speech + lip-sync (from the landmarks and audio already decoded; SyncNet batched across
a source's clips) -> annotations -> shards (one full-resolution decode of each clip that reaches them).
"""
from __future__ import annotations

import logging
import shutil
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from curation import reasons
from curation.clips import Candidate, clip_id, split_range, too_short
from curation.config import CurationConfig
from curation.download import Downloaded, download
from curation.faces import FaceSpan, segment_faces
from foundation.faces import FaceAnalyzer, FrameFaces, crop_boxes
from curation.duplicates import content_keys
from curation.speech_sync_annotate import ClipJob, ClipModels, clip_models, process_passed_clips
from curation.manifest import ManifestRow, source_row, status_for
from curation.media import MediaInfo, check_gaps, iter_frames, load_audio, probe
from curation.motion import (face_motion, frame_change, judge_motion, picture_change, small_grey, split_static,
                             static_stretches)
from curation.manifest_parts import PartInfo, write_part
from curation.previews import PreviewRecorder
from curation.progress import SourceProgress
from curation.quality import clip_metrics, frame_metrics, judge
from curation.reasons import Rejected
from curation.scenes import ShotDetector
from curation.screen import probe_faces, speech_stretches, voiced_frames
from curation.shards import SourceShardWriter
from curation.sources import Source
from curation import timing
from curation.timing import stage
from foundation.storage import Location

log = logging.getLogger(__name__)


@dataclass
class Analysis:
    """Per source frame (None / NaN outside the analysed stretches), and the shots inside them."""

    shots: list[tuple[int, int]]
    faces: list[Optional[FrameFaces]]
    frame_metrics: list[Optional[dict[str, float]]]
    changes: np.ndarray  # picture change from the frame before (curation.motion.frame_change)
    voiced: np.ndarray  # silero-vad hears speech in the frame (curation.screen.voiced_frames)
    stretches: list[tuple[int, int]]  # the analysed [start, end) ranges; the rest could not yield a clip


def analyse(info: MediaInfo, cfg: CurationConfig, stretches: Optional[list[tuple[int, int]]] = None,
            voiced: Optional[np.ndarray] = None,
            on_frame: Optional[Callable[[int, np.ndarray], None]] = None) -> Analysis:
    """One low-resolution decode of each stretch (default: the whole source) feeding the shot detector,
    the face tracker, frame quality and picture change (and `on_frame(index, frame)`: the review
    page's preview recorder). Each stretch starts as a new shot. Without `voiced` no frame counts as
    speech (so no clip is judged on its mouth motion)."""
    stretches = [(0, info.num_frames)] if stretches is None else stretches
    voiced = np.zeros(info.num_frames, bool) if voiced is None else voiced
    faces: list[Optional[FrameFaces]] = [None] * info.num_frames
    metrics: list[Optional[dict[str, float]]] = [None] * info.num_frames
    changes = np.full(info.num_frames, np.nan, np.float32)
    shots: list[tuple[int, int]] = []
    progress = SourceProgress(info.path.name, info.num_frames, info.fps, cfg.run.progress_every_s)
    with FaceAnalyzer(cfg.faces) as analyzer:
        for start, end in stretches:
            analyzer.reset()
            shot_detector = ShotDetector(cfg.scenes, info.fps)
            previous = None
            for index, frame in iter_frames(info, start, end, short_side=cfg.media.analysis_short_side):
                progress.frame(index)
                if on_frame is not None:
                    on_frame(index, frame)
                known_cuts = len(shot_detector.cuts)
                shot_detector.feed(index - start, frame)
                if len(shot_detector.cuts) > known_cuts:
                    analyzer.reset()  # do not carry mesh tracking across a cut
                found = analyzer.analyze(frame)
                faces[index] = found
                if len(found.boxes):
                    metrics[index] = frame_metrics(frame, found.boxes[0], found.landmarks, float(found.scores[0]))
                small = small_grey(frame)
                changes[index] = frame_change(previous, small)
                previous = small
            shots += [(a + start, b + start) for a, b in shot_detector.shots()]
    return Analysis(shots, faces, metrics, changes, voiced, stretches)


def plan_span(span: FaceSpan, analysis: Analysis, info: MediaInfo, source_id: str, cfg: CurationConfig,
              crops_px: Optional[np.ndarray] = None) -> list[Candidate]:
    """Candidates for one face span: rejected whole if not a single face, else split and judged
    (`crops_px`: the span's crop squares, crop_boxes)."""
    if span.status == "no_face":
        return [Candidate(clip_id(source_id, span.start, span.end), span.start, span.end, reasons.NO_FACE)]
    if span.status != "ok":  # the main face's metrics still tell a reader what the span looked like
        return [Candidate(clip_id(source_id, span.start, span.end), span.start, span.end, reasons.MULTIPLE_FACES,
                          _span_metrics(span, analysis, info, span.start, span.end))]
    out = []
    for start, end in split_range(span.start, span.end, info.fps, cfg.clips):
        cid = clip_id(source_id, start, end)
        if too_short(start, end, info.fps, cfg.clips):
            out.append(Candidate(cid, start, end, reasons.TOO_SHORT, span_offset=start - span.start))
            continue
        local = slice(start - span.start, end - span.start)
        metrics = _span_metrics(span, analysis, info, start, end, crops_px)
        metrics["picture_change"] = picture_change(analysis.changes[start:end])
        metrics.update(face_motion(span.landmarks[local], analysis.voiced[start:end], info.width, info.height, info.fps))
        verdict = judge(metrics, cfg.quality)
        verdict = verdict if verdict.reason else judge_motion(metrics, cfg.motion)
        out.append(Candidate(cid, start, end, verdict.reason, metrics, start - span.start, verdict.detail))
    return out


def _span_metrics(span: FaceSpan, analysis: Analysis, info: MediaInfo, start: int, end: int,
                  crops_px: Optional[np.ndarray] = None) -> dict[str, float]:
    """clip_metrics of the span's main face over frames [start, end) (`crops_px`: the span's crop squares)."""
    local = slice(start - span.start, end - span.start)
    per_frame = [m for m in analysis.frame_metrics[start:end] if m is not None]
    presence = float(np.mean(~np.isnan(span.landmarks[local, 0, 0])))
    return clip_metrics(per_frame, span.boxes[local], info.width, info.height, presence,
                        None if crops_px is None else crops_px[local])


def _provenance_columns(provenance: dict) -> dict[str, Optional[str]]:
    return {
        "title": provenance.get("title"),
        "webpage_url": provenance.get("webpage_url") or provenance.get("local_path"),
        "license": provenance.get("license"),
    }


def process_source(source: Source, out: Location | Path | str, cfg: CurationConfig) -> list[ManifestRow]:
    """Run one source end to end, write its shards, then commit its manifest part; return its rows.

    Deterministic problems with the input come back as rows with a reason; only bugs raise.
    """
    location = out if isinstance(out, Location) else Location(out)
    models = clip_models(cfg)  # first: a model that cannot load fails the source before any download
    downloaded: Optional[Downloaded] = None
    work_dir = location.scratch_dir("downloads")
    base: dict = {}
    content: list[str] = []
    with timing.collect() as seconds:
        try:
            with stage("download"):
                downloaded = download(source, work_dir, cfg.download)
            with stage("content_hash"):
                content = content_keys(downloaded.path, downloaded.provenance)
            base = _provenance_columns(downloaded.provenance)
            info = probe(downloaded.path, cfg.media)
            base["source_duration_s"] = info.duration_s
            base.update(info.geometry_columns())
            with stage("screen"):  # before any video decode: audio, speech presence, then a sparse face probe
                audio = load_audio(info, cfg.media.sample_rate)
                check_gaps(info, cfg.media)
                voiced, stretches = screen(info, audio, cfg)
            previews = PreviewRecorder(info, cfg) if cfg.review.enabled else None
            with stage("decode_analysis"):
                analysis = analyse(info, cfg, stretches, voiced, previews.feed if previews else None)
                check_gaps(info, cfg.media)
            with stage("clips"):  # segmentation, judging, separation: what the steps inside do not time
                rows = _export(source, downloaded, info, analysis, audio, location, cfg, models, base)
            if info.gaps.skipped:  # the clip decodes after analysis re-read the same packets: the note is complete
                rows = [replace(row, detail=row.detail or info.gaps.note()) for row in rows]
            if previews:  # before the part: a committed source's previews are all written
                previews.write(location, source.source_id, rows, analysis.faces)
        except Rejected as rej:
            rows = [source_row(source.raw, source.source_id, rej.reason, rej.detail, **base, **rej.metrics)]
        finally:
            if downloaded is not None and source.kind == "url":
                shutil.rmtree(work_dir / source.source_id, ignore_errors=True)
    if not rows:  # e.g. every shot shorter than one frame: still account for the source
        rows = [source_row(source.raw, source.source_id, reasons.TOO_SHORT, "no candidate clip", **base)]
    write_part(location, source.source_id, rows, PartInfo.of(cfg, content_keys=content, stage_seconds=seconds))
    return rows


def screen(info: MediaInfo, audio: np.ndarray, cfg: CurationConfig) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Per-frame speech presence and the stretches worth analysing; Rejected when none can yield a clip."""
    voiced = voiced_frames(audio, info.num_frames, info.fps, cfg.media.sample_rate, cfg)
    stretches = speech_stretches(voiced, info.fps, cfg)
    if not stretches:
        raise Rejected(reasons.NO_SPEECH, f"no {cfg.clips.min_s:g} s of the source audio is at least "
                       f"screen.min_speech_ratio={cfg.screen.min_speech_ratio:g} voiced (silero-vad)",
                       {"speech_ratio": float(voiced.mean()) if voiced.size else 0.0, "vocals_separated": False})
    found, looked = probe_faces(info, stretches, cfg)
    log.debug("%s: analysing %s of %d frames; face probe %s after %d frame(s)", info.path, stretches,
              info.num_frames, "found a face" if found else "found none", looked)
    if not found:
        raise Rejected(reasons.NO_FACE, f"no face in any of {looked} probe frame(s), one every "
                       f"screen.face_probe_every_s={cfg.screen.face_probe_every_s:g} s")
    return voiced, stretches


def _export(
    source: Source,
    downloaded: Downloaded,
    info: MediaInfo,
    analysis: Analysis,
    audio: np.ndarray,
    location: Location,
    cfg: CurationConfig,
    models: ClipModels,
    base: dict,
) -> list[ManifestRow]:
    writer = SourceShardWriter(location, source.source_id, cfg.shards)
    try:
        planned = _plan(analysis, info, source.source_id, cfg)
        finished: dict[str, tuple[Candidate, Optional[str]]] = {}
        for group in _groups([job for _, job in planned if job is not None], cfg.sync.batch_frames):
            for cand, shard in process_passed_clips(writer, source, downloaded, info, group, audio, cfg, models):
                finished[cand.clip_id] = (cand, shard)
        rows = []
        for cand, _ in planned:
            cand, shard = finished.get(cand.clip_id, (cand, None))
            rows.append(ManifestRow(
                source=source.raw, source_id=source.source_id, clip_id=cand.clip_id,
                status=status_for(cand.reason), reason=cand.reason, detail=cand.detail,
                start_s=cand.start / info.fps, end_s=cand.end / info.fps, shard=shard,
                sync_backend=cand.sync_backend, sync_verified=cand.sync_verified, vocals_separated=cand.vocals_separated,
                language=cand.language,
                **base, **{k: v for k, v in cand.metrics.items() if k in ManifestRow.__dataclass_fields__},
            ))
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return rows


def _plan(analysis: Analysis, info: MediaInfo, source_id: str, cfg: CurationConfig) -> list[tuple[Candidate, Optional[ClipJob]]]:
    """Every candidate clip in source order; those that passed quality come with what finishing them needs."""
    planned = [(cand, None) for cand in _unanalysed(analysis, info, source_id, cfg)]
    for shot_start, shot_end in analysis.shots:
        frozen = static_stretches(analysis.changes, shot_start, shot_end, info.fps, cfg.motion)
        for start, end, static in split_static(shot_start, shot_end, frozen):
            if static:
                detail = (f"{(end - start) / info.fps:.2f} s without picture change > "
                          f"motion.max_static_s={cfg.motion.max_static_s:g}")
                planned.append((Candidate(clip_id(source_id, start, end), start, end, reasons.STATIC_PICTURE,
                                          {"picture_change": picture_change(analysis.changes[start:end])},
                                          detail=detail), None))
                continue
            for span in segment_faces(analysis.faces[start:end], start, cfg.faces, info.fps):
                boxes_px = crop_boxes(span.boxes, info.width, info.height, cfg.faces, info.fps) if span.status == "ok" else None
                for cand in plan_span(span, analysis, info, source_id, cfg, boxes_px):
                    job = None
                    if cand.reason is None and boxes_px is not None:
                        local = slice(cand.span_offset, cand.span_offset + cand.end - cand.start)
                        job = ClipJob(cand, boxes_px[local], span.landmarks[local])
                    planned.append((cand, job))
    return sorted(planned, key=lambda item: item[0].start)


def _unanalysed(analysis: Analysis, info: MediaInfo, source_id: str, cfg: CurationConfig) -> list[Candidate]:
    """A `no_speech` candidate for each stretch the screen left out (too far from any speech)."""
    bounds = [0, *(b for stretch in analysis.stretches for b in stretch), info.num_frames]
    detail = (f"not analysed: more than clips.max_s - clips.min_s from any {cfg.clips.min_s:g} s with "
              f"screen.min_speech_ratio={cfg.screen.min_speech_ratio:g} voiced audio")
    return [Candidate(clip_id(source_id, a, b), a, b, reasons.NO_SPEECH,
                      {"speech_ratio": float(analysis.voiced[a:b].mean())}, detail=detail, vocals_separated=False)
            for a, b in zip(bounds[::2], bounds[1::2]) if b > a]


def _groups(jobs: list[ClipJob], max_frames: int) -> Iterator[list[ClipJob]]:
    """Consecutive jobs, as many at a time as fit in max_frames (at least one)."""
    group: list[ClipJob] = []
    frames = 0
    for job in jobs:
        length = job.cand.end - job.cand.start
        if group and frames + length > max_frames:
            yield group
            group, frames = [], 0
        group.append(job)
        frames += length
    if group:
        yield group


def process_source_safely(source: Source, out: Location | Path | str, cfg: CurationConfig) -> list[ManifestRow]:
    """Like process_source, but a bug becomes a recorded `internal_error` row instead of a crash."""
    location = out if isinstance(out, Location) else Location(out)
    try:
        return process_source(source, location, cfg)
    except Exception as err:  # noqa: BLE001 - recorded with its traceback, never silently lost
        log.error("internal error on %s:\n%s", source.raw, traceback.format_exc())
        rows = [source_row(source.raw, source.source_id, reasons.INTERNAL_ERROR, f"{type(err).__name__}: {err}")]
        write_part(location, source.source_id, rows, PartInfo.of(cfg))
        return rows
