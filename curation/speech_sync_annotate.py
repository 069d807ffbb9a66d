"""What happens to the clips that passed the quality step: vocals, speech, audio quality, lip-sync,
annotations, sample.

Everything here works from what the face step already has (landmarks in crop pixels, the source
audio decoded once); a clip's full-resolution crops are decoded lazily, at most once, when the
SyncNet backend or the annotations and the shard sample need them. Clips come in groups (a
source's clips, up to `sync.batch_frames` frames), so SyncNet runs its batches across clips. The
heavy models are built once per worker process (`clip_models`); `preflight` checks their files
at start-up. The costlier audio steps see only the clips the cheaper ones kept: vocal separation
those whose mixture has speech (`speech.separate_only_speech`), DNSMOS those whose vocals have it.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, replace
from typing import Callable, Optional

import numpy as np

from curation import reasons
from foundation import schema
from curation.annotations import Annotator, check_model_dirs, pin_model_dirs
from curation.clips import Candidate
from curation.config import CurationConfig
from curation.download import Downloaded
from curation.export import build_sample
from curation.language import LanguageIdentifier, check_language_model, kept
from foundation.faces import crop_frame, landmarks_to_crop
from curation.media import MediaInfo, iter_frames
from curation.shards import SourceShardWriter
from curation.sources import Source
from curation.speech import (SEPARATION_WARNING, VocalSeparator, dnsmos, make_separator, resolve_separation, separate,
                             separator_factory, separator_model, speech_ratio)
from curation.sync import (FALLBACK_WARNING, ClipSignals, SyncScorer, SyncVerdict, audio_window, judge_sync,
                           make_scorer, resolve_backend)
from curation.timing import stage
from foundation.config import ConfigError
from foundation.syncnet import SyncResult, weights_in

log = logging.getLogger(__name__)


def fill_missing_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """Interpolate frames where the mesh was lost, so stored landmarks never hold NaN."""
    valid = ~np.isnan(landmarks[:, 0, 0])
    if valid.all():
        return landmarks
    idx = np.arange(len(landmarks))
    flat = landmarks.reshape(len(landmarks), -1)
    filled = np.stack([np.interp(idx, idx[valid], flat[valid, j]) for j in range(flat.shape[1])], axis=1)
    return filled.reshape(landmarks.shape).astype(landmarks.dtype)


@dataclass
class ClipModels:
    """The heavy per-clip helpers of one worker process."""

    separator: VocalSeparator
    separator_name: Optional[str]  # what clips record as their vocal separator; None = no separation
    scorer: SyncScorer
    annotator: Optional[Annotator]  # None when annotations.enabled is false
    language: Optional[LanguageIdentifier] = None  # None without a language model (no language recorded)


_MODELS: dict[str, ClipModels] = {}


def clip_models(cfg: CurationConfig) -> ClipModels:
    """Built once per process (a Ray worker runs many sources) for the config's model settings."""
    key = repr((cfg.pretrained_dir, cfg.speech, cfg.sync, cfg.annotations))
    if key not in _MODELS:
        _MODELS.clear()
        separator, separator_name = make_separator(cfg.speech, cfg.pretrained_dir)
        _MODELS[key] = ClipModels(
            separator=separator, separator_name=separator_name,
            scorer=make_scorer(cfg.sync, cfg.pretrained_dir),
            annotator=Annotator(cfg.annotations, cfg.pretrained_dir) if cfg.annotations.enabled else None,
            language=_language_identifier(cfg),
        )
    return _MODELS[key]


def _language_identifier(cfg: CurationConfig) -> Optional[LanguageIdentifier]:
    folder = check_language_model(cfg.speech, cfg.pretrained_dir)
    return LanguageIdentifier(folder) if folder else None


def preflight(cfg: CurationConfig) -> CurationConfig:
    """Cheap start-up checks of what `clip_models` will load; raises ConfigError naming the key.

    Entry points call it before scheduling work, so a missing model folder is one clear error
    instead of a failure in every source. Returns the config to run with: the annotation model
    folders filled in from pretrained_dir and pinned (`pin_model_dirs`), and the lip-sync
    backend resolved (`auto` -> syncnet or envelope) and vocal separation (`auto` -> on or off), so that
    every worker judges the same way; warns when it falls back to the weight-free scorer or to no
    separation.
    """
    if cfg.annotations.enabled:
        check_model_dirs(cfg.annotations, cfg.pretrained_dir)
        cfg = replace(cfg, annotations=pin_model_dirs(cfg.annotations, cfg.pretrained_dir))
    language_model = check_language_model(cfg.speech, cfg.pretrained_dir)
    if language_model is not None and not cfg.speech.language_model:  # pinned: workers run elsewhere
        cfg = replace(cfg, speech=replace(cfg.speech, language_model=str(language_model)))
    sync = resolve_backend(cfg.sync, cfg.pretrained_dir)
    if sync.backend == "envelope" and cfg.sync.backend == "auto":
        log.warning(FALLBACK_WARNING.format(path=weights_in(cfg.pretrained_dir)))
    if cfg.speech.separator:
        try:
            separator_factory(cfg.speech.separator)
        except (ImportError, AttributeError, ValueError) as err:
            raise ConfigError(f"config key 'speech.separator': cannot import {cfg.speech.separator!r}: {err}") from err
    speech = resolve_separation(cfg.speech, cfg.pretrained_dir)
    if speech.separation == "off" and cfg.speech.separation == "auto":
        log.warning(SEPARATION_WARNING.format(path=separator_model(cfg.speech, cfg.pretrained_dir)))
    return replace(cfg, sync=sync, speech=speech)


def crop_loader(info: MediaInfo, cand: Candidate, boxes: np.ndarray, size: int) -> Callable[[], list[np.ndarray]]:
    """The clip's output crops from one full-resolution decode of its span, done on first use only
    (`.cache_clear()` frees them)."""

    @functools.cache
    def crops() -> list[np.ndarray]:
        with stage("decode_clip"):
            return [crop_frame(frame, box, size) for (_, frame), box in zip(iter_frames(info, cand.start, cand.end), boxes)]

    return crops


@dataclass
class ClipJob:
    """A clip that passed the quality step, with its per-frame crop boxes and face-mesh points."""

    cand: Candidate
    boxes: np.ndarray  # (frames, 3) x0, y0, side in source pixels
    landmarks: np.ndarray  # (frames, 478, 3) normalised, NaN where the mesh was lost


@dataclass
class _Clip:
    """A job with everything decoded that its speech and lip-sync steps look at."""

    job: ClipJob
    landmarks_crop: np.ndarray
    crops: Callable[[], list[np.ndarray]]
    mixture: np.ndarray  # the source audio under the clip, padded by sync.max_abs_offset frames each side
    pad: int
    hop: int
    vocals: Optional[np.ndarray] = None  # the same after vocal separation (`separate_vocals`)
    separated: bool = False  # vocals came out of a separator (else they are the mixture)

    def shifted(self, signal: np.ndarray, offset: int) -> np.ndarray:
        """The clip's span of `signal`, taken `offset` frames later in the source."""
        frames = self.job.cand.end - self.job.cand.start
        return signal[(self.pad + offset) * self.hop:(self.pad + offset + frames) * self.hop]

    def signals(self, info: MediaInfo, rate: int) -> ClipSignals:
        return ClipSignals(self.landmarks_crop, self.shifted(self.voice, 0), rate, info.fps, self.crops)

    @property
    def voice(self) -> np.ndarray:
        """What the speech, quality, sync and feature steps hear: the vocals, or the mixture unseparated."""
        return self.mixture if self.vocals is None else self.vocals

    def separate_vocals(self, models: ClipModels, rate: int) -> None:
        # One separation covers the clip and every shift a sync correction may apply.
        if models.separator_name is not None and self.vocals is None:
            with stage("separation"):
                self.vocals = separate(models.separator, self.mixture, rate)
            self.separated = True


def _prepare(job: ClipJob, info: MediaInfo, audio: np.ndarray, cfg: CurationConfig, models: ClipModels) -> _Clip:
    cand, size, rate = job.cand, cfg.faces.output_size, cfg.media.sample_rate
    hop = rate // info.fps
    landmarks_crop = landmarks_to_crop(fill_missing_landmarks(job.landmarks), job.boxes, info.width, info.height, size)
    pad = cfg.sync.max_abs_offset
    mixture = audio_window(audio, cand.start - pad, cand.end + pad, hop)
    return _Clip(job, landmarks_crop, crop_loader(info, cand, job.boxes, size), mixture, pad, hop)


def _speech_ratio(clip: _Clip, cfg: CurationConfig, models: ClipModels) -> float:
    """The clip's speech share in its vocals, separated first unless the mixture already falls short."""
    rate = cfg.media.sample_rate
    if models.separator_name is not None and cfg.speech.separate_only_speech:
        ratio = speech_ratio(clip.shifted(clip.mixture, 0), rate, cfg.speech)
        if ratio < cfg.speech.min_ratio:
            return ratio
    clip.separate_vocals(models, rate)
    return speech_ratio(clip.shifted(clip.voice, 0), rate, cfg.speech)


def _audio_quality(clip: _Clip, cfg: CurationConfig) -> dict[str, float]:
    """DNSMOS of the clip's vocals (nothing when speech.min_dnsmos is 0)."""
    if cfg.speech.min_dnsmos <= 0:
        return {}
    with stage("dnsmos"):
        return dnsmos(clip.shifted(clip.voice, 0), cfg.media.sample_rate)


def score_sync(scorer: SyncScorer, clips: list[ClipSignals], cfg: CurationConfig) -> list[SyncResult]:
    """The lip-sync measurement of every clip at once (SyncNet batches across them)."""
    return scorer.score_many(clips, cfg.sync.max_offset) if clips else []


def process_passed_clips(
    writer: SourceShardWriter,
    source: Source,
    downloaded: Downloaded,
    info: MediaInfo,
    jobs: list[ClipJob],
    audio: np.ndarray,
    cfg: CurationConfig,
    models: ClipModels,
) -> list[tuple[Candidate, Optional[str]]]:
    """Speech, language and audio-quality checks of each clip, one lip-sync pass over those that passed,
    then the annotated sample of each clip that passed all.

    Returns, per job, the candidate with its verdict and new metrics, and the shard it went to
    (None if rejected).
    """
    rate = cfg.media.sample_rate
    clips = [_prepare(job, info, audio, cfg, models) for job in jobs]
    with stage("speech_sync"):
        verdicts: dict[int, tuple[Optional[str], dict[str, float]]] = {}
        languages: dict[int, tuple[str, float]] = {}
        for clip in clips:
            ratio = _speech_ratio(clip, cfg, models)
            reason = reasons.NO_SPEECH if ratio < cfg.speech.min_ratio else None
            if reason is None and models.language:  # cheaper than DNSMOS, and decides as much
                languages[id(clip)] = models.language(clip.shifted(clip.voice, 0), rate)
                reason = None if kept(languages[id(clip)][0], cfg.speech) else reasons.OTHER_LANGUAGE
            quality = _audio_quality(clip, cfg) if reason is None else {}
            if quality and quality["dnsmos_ovrl"] < cfg.speech.min_dnsmos:
                reason = reasons.POOR_AUDIO
            verdicts[id(clip)] = reason, {"speech_ratio": ratio, **quality}
        talking = [clip for clip in clips if verdicts[id(clip)][0] is None]
        signals = [c.signals(info, rate) for c in talking]
        results = dict(zip(map(id, talking), score_sync(models.scorer, signals, cfg)))
    out = []
    for clip in clips:
        reason, audio_metrics = verdicts[id(clip)]
        cand = replace(clip.job.cand, vocals_separated=clip.separated,
                       metrics={**clip.job.cand.metrics, **audio_metrics})
        if id(clip) in languages:
            language, probability = languages[id(clip)]
            cand = replace(cand, language=language, metrics={**cand.metrics, "language_prob": probability})
        if reason is not None:
            out.append((replace(cand, reason=reason), None))
            continue
        result = results[id(clip)]
        verdict = judge_sync(result, cfg.sync, models.scorer)
        cand = replace(cand, reason=verdict.reason, sync_backend=models.scorer.name, sync_verified=verdict.verified,
                       metrics={**cand.metrics, "sync_offset": result.offset,
                                "sync_confidence": result.confidence, "sync_min_dist": result.min_dist})
        log.debug("%s: %s -> %s", cand.clip_id, cand.metrics, cand.reason or "accepted")
        out.append((cand, None if verdict.reason else _write_sample(writer, source, downloaded, info, clip, cand,
                                                                    verdict, cfg, models)))
        clip.crops.cache_clear()  # type: ignore[attr-defined]  # this clip is done: free its frames
    return out


def _write_sample(writer: SourceShardWriter, source: Source, downloaded: Downloaded, info: MediaInfo, clip: _Clip,
                  cand: Candidate, verdict: SyncVerdict, cfg: CurationConfig, models: ClipModels) -> str:
    """Annotate an accepted clip (its audio corrected by the verdict's shift) and write its sample."""
    with stage("annotations"):
        annotations, face_found = (models.annotator.annotate(clip.crops(), clip.landmarks_crop,
                                                             clip.shifted(clip.voice, verdict.shift), info.fps)
                                   if models.annotator else ({}, False))
    frames = cand.end - cand.start
    meta = schema.ClipMeta(
        clip_id=cand.clip_id, source=source.raw, source_id=source.source_id,
        start_s=cand.start / info.fps, end_s=cand.end / info.fps, num_frames=frames,
        fps=info.fps, sample_rate=cfg.media.sample_rate, size=cfg.faces.output_size,
        crop_boxes=np.round(clip.job.boxes, 2).tolist(), metrics=cand.metrics, provenance=downloaded.provenance,
        sync_backend=models.scorer.name, sync_verified=verdict.verified, audio_shift_frames=verdict.shift,
        vocal_separator=models.separator_name if clip.separated else None, annotated=models.annotator is not None,
        face_found=face_found,
        audio_encoder=models.annotator.encoder if models.annotator else None,
        language=cand.language, language_prob=cand.metrics.get("language_prob"),
    )
    with stage("encode"):
        vocals = clip.shifted(clip.vocals, verdict.shift) if clip.vocals is not None else None
        sample = build_sample(meta, clip.crops(), clip.landmarks_crop, clip.shifted(clip.mixture, verdict.shift),
                              cfg.shards.video_crf, annotations, vocals)
    return writer.write(sample)
