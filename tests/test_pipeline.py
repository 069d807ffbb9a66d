"""The whole per-source data path on real fixture media, without Ray."""
import io
import sys
import types
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import webdataset as wds

import curation.speech_sync_annotate
from curation import reasons
from foundation import schema
from curation.config import CurationConfig
from examples.fixtures import loudness_envelope, speech_track
from curation.pipeline import process_source_safely
from curation.sources import parse_source
from curation.sync import EnvelopeScorer
from curation_expected import expected
from foundation.config import load_config
from foundation.syncnet import summarize_curve


@pytest.fixture(scope="module")
def cfg(annotation_overrides) -> CurationConfig:
    return load_config(CurationConfig, None, annotation_overrides)


@pytest.fixture(scope="module")
def outcomes(fixture_media, cfg, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("pipeline_out")
    rows = {info.variant: process_source_safely(parse_source(str(info.path), out), out, cfg) for info in fixture_media}
    return out, rows


def test_every_fixture_ends_with_its_expected_outcome(fixture_media, outcomes) -> None:
    _, rows = outcomes
    for info in fixture_media:
        reason, clips = expected(info)
        got = rows[info.variant]
        accepted = [r for r in got if r.status == "accepted"]
        if reason is None:
            assert len(accepted) == clips, (info.variant, got)
            assert all(r.shard and r.clip_id for r in accepted)
        else:
            assert not accepted, (info.variant, got)
            assert reason in {r.reason for r in got}, (info.variant, [r.reason for r in got])
        assert all(r.source_id == got[0].source_id for r in got)


def test_a_multiple_faces_row_says_what_its_main_face_looked_like(outcomes) -> None:
    _, rows = outcomes
    crowded = [r for r in rows["two_faces"] if r.reason == reasons.MULTIPLE_FACES]
    assert crowded, rows["two_faces"]
    for row in crowded:  # measured on the largest face, as for any clip
        assert row.face_px > 50 and row.landmark_presence > 0.5 and row.sharpness > 0 and 0 < row.brightness < 255, row


def test_speech_and_sync_columns_for_every_clip_that_reached_them(outcomes) -> None:
    _, rows = outcomes
    for variant, got in rows.items():
        for row in got:
            passed_quality = row.status == "accepted" or row.reason in (reasons.NO_SPEECH, reasons.POOR_AUDIO,
                                                                         reasons.OUT_OF_SYNC)
            assert (row.speech_ratio is not None) == passed_quality, (variant, row)
            has_speech = passed_quality and row.reason != reasons.NO_SPEECH
            # the tiny base holds the stand-in separator: every clip with speech in its mixture was separated
            assert row.vocals_separated is (has_speech if passed_quality else None), (variant, row)
            assert all((v is not None) == has_speech for v in (row.dnsmos_ovrl, row.dnsmos_sig, row.dnsmos_bak))
            has_sync = has_speech and row.reason != reasons.POOR_AUDIO
            assert all((v is not None) == has_sync for v in (row.sync_offset, row.sync_confidence, row.sync_min_dist))


def test_without_weights_talking_clips_are_kept_unverified_not_rejected(fixture_by_variant, outcomes) -> None:
    """No SyncNet weights: the envelope fallback judges. The fixtures' lips articulate like real ones,
    which it cannot confirm, so every talking clip is kept but marked unverified, the shifted ones
    too, and no audio is moved on a measurement below its confidence threshold."""
    out, rows = outcomes
    for variant in ("in_sync", "scene_cut", "odd_extension", "shifted_5", "shifted_10"):
        for row in rows[variant]:
            assert row.status == "accepted" and row.speech_ratio > 0.5, row
            assert (row.sync_backend, row.sync_verified) == ("envelope", False), row
            assert row.sync_confidence < EnvelopeScorer.default_min_confidence, row
    for sample in _samples(out):
        meta = schema.check_sample(sample)
        assert (meta.sync_backend, meta.sync_verified, meta.audio_shift_frames) == ("envelope", False, 0)
    (silent,) = rows["silent"]
    assert silent.reason == reasons.NO_SPEECH and silent.speech_ratio < 0.1 and silent.sync_backend is None


class ReferenceSpeechScorer:
    """A verifying scorer that knows what the fixtures' lips say: it measures how late a clip's audio
    is against the speech the lips were rendered from (loudness cross-correlation). It stands in
    for trained SyncNet weights, which cannot be had here, to test what the pipeline does with a
    measured shift; the fixtures' clips start at frame 0 of their source."""

    name = "reference"
    default_min_confidence = 1.0
    verifies = True

    def score_many(self, clips, max_offset):
        return [self._score(clip, max_offset) for clip in clips]

    def _score(self, clip, max_offset):
        frames = clip.num_frames
        heard = loudness_envelope(clip.audio)[:frames]
        said = loudness_envelope(speech_track(frames / clip.fps))
        corr = [np.corrcoef(heard[max(0, k):frames + min(0, k)], said[max(0, -k):frames - max(0, k)])[0, 1]
                for k in range(-max_offset, max_offset + 1)]
        return summarize_curve(-10 * np.array(corr))


@pytest.fixture(scope="module")
def measured_outcomes(fixture_by_variant, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("measured")
    cfg = load_config(CurationConfig, None, ["annotations.enabled=false"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(curation.speech_sync_annotate, "_MODELS", {})
        patch.setattr(curation.speech_sync_annotate, "make_scorer", lambda sync_cfg, base: ReferenceSpeechScorer())
        rows = {v: process_source_safely(parse_source(str(fixture_by_variant[v].path), out), out, cfg)
                for v in ("in_sync", "shifted_5", "shifted_10")}
    return out, rows


def test_a_measured_shift_is_corrected_or_caught(fixture_by_variant, measured_outcomes) -> None:
    _, rows = measured_outcomes
    (sync,), (five,), (ten,) = rows["in_sync"], rows["shifted_5"], rows["shifted_10"]
    assert (sync.status, sync.sync_offset, sync.sync_verified) == ("accepted", 0, True)
    assert (five.status, five.sync_offset, five.sync_verified) == ("accepted", 5, True)
    assert (ten.reason, ten.sync_offset, ten.sync_verified, ten.shard) == (reasons.OUT_OF_SYNC, 10, False, None)
    assert fixture_by_variant["shifted_10"].shift_frames == 10


def test_a_corrected_clip_is_stored_in_sync(measured_outcomes) -> None:
    out, _ = measured_outcomes
    stored = {}
    for sample in _samples(out):
        meta = schema.check_sample(sample, require_annotations=False)
        stored[meta.source_id] = (meta, sf.read(io.BytesIO(sample["wav"]), dtype="float32")[0])
    (sync_meta, sync_audio), (five_meta, five_audio) = sorted(stored.values(), key=lambda m: m[0].audio_shift_frames)
    assert (sync_meta.audio_shift_frames, five_meta.audio_shift_frames) == (0, 5)
    assert (sync_meta.sync_verified, five_meta.sync_verified) == (True, True)
    # the shifted source's audio, taken 5 frames later, is the in-sync source's audio
    head = 115 * 640
    assert np.corrcoef(sync_audio[:head], five_audio[:head])[0, 1] > 0.95


def test_no_clip_crosses_the_scene_cut(fixture_by_variant, outcomes) -> None:
    _, rows = outcomes
    cut_s = fixture_by_variant["scene_cut"].duration_s / 2
    accepted = [r for r in rows["scene_cut"] if r.status == "accepted"]
    assert len(accepted) == 2
    assert all(r.end_s <= cut_s + 0.2 or r.start_s >= cut_s - 0.2 for r in accepted)


def _samples(out: Path) -> list[dict]:
    shards = sorted(str(p) for p in (out / "shards").glob("*.tar"))
    return list(wds.WebDataset(shards, shardshuffle=False))


def test_shards_read_back_with_centred_faces_and_matching_lengths(outcomes) -> None:
    out, rows = outcomes
    samples = _samples(out)
    accepted = {r.clip_id for rs in rows.values() for r in rs if r.status == "accepted"}
    assert sorted(s["__key__"] for s in samples) == sorted(accepted)
    for sample in samples:
        meta = schema.check_sample(sample)
        frames = [f.to_ndarray(format="rgb24") for f in av.open(io.BytesIO(sample["mp4"])).decode(video=0)]
        assert len(frames) == meta.num_frames and frames[0].shape == (512, 512, 3)
        audio, rate = sf.read(io.BytesIO(sample["wav"]))
        assert rate == 16000 and abs(len(audio) - meta.num_frames * 640) <= 1
        vocals, _ = sf.read(io.BytesIO(sample[schema.KEY_VOCALS]))  # beside the mixture, which is kept as it was
        assert meta.vocal_separator == "audio-separator:Kim_Vocal_2.onnx" and len(vocals) == len(audio)
        assert 0.5 < np.corrcoef(vocals, audio)[0, 1] < 0.999
        landmarks = schema.decode_npy(sample["landmarks.npy"]).astype(np.float32)
        centre = landmarks.reshape(-1, 2).mean(0)
        assert np.all(np.abs(centre - 256) < 0.15 * 512), (meta.clip_id, centre)  # face centred
        assert not np.isnan(landmarks).any()
        assert meta.end_s - meta.start_s == pytest.approx(meta.num_frames / 25)


def test_every_sample_carries_consistent_annotations(outcomes) -> None:
    out, _ = outcomes
    for sample in _samples(out):
        meta = schema.check_sample(sample)
        assert meta.annotated and meta.schema_version == schema.SCHEMA_VERSION and meta.sync_backend == "envelope"
        features = schema.decode_npy(sample[schema.KEY_AUDIO_FEATURES])
        assert features.dtype == np.float16 and features.shape[:2] == (meta.num_frames, 4)  # tiny wav2vec2: 4 layers
        assert np.isfinite(features).all() and features.std() > 0
        embedding = schema.decode_npy(sample[schema.KEY_FACE_EMB])
        assert embedding.shape == (512,) and embedding.dtype == np.float32
        assert meta.face_found == bool(embedding.any())  # the tiny detector finds no face: zero embedding
        face_mask = schema.decode_png(sample[schema.KEY_FACE_MASK])
        landmarks = schema.decode_npy(sample[schema.KEY_LANDMARKS]).astype(np.float32)
        nose_x, nose_y = np.round(landmarks[:, 1].mean(0)).astype(int)
        assert set(np.unique(face_mask)) == {0, 255} and face_mask[nose_y, nose_x] == 255
        regions = schema.decode_npy(sample[schema.KEY_REGION_MASKS]).astype(np.float32)
        assert regions.shape == (3, 64, 64) and regions.min() >= 0 and regions.max() <= 1
        pose, face, lip = regions
        mouth_x, mouth_y = np.round(landmarks[:, 13].mean(0) / 8).astype(int)  # 512 px -> 64
        assert lip[mouth_y, mouth_x] > 0.5 and pose[mouth_y, mouth_x] < 0.5 and pose[0, 0] > 0.8


def test_a_vocal_separator_feeds_the_speech_step(fixture_by_variant, cfg, tmp_path, monkeypatch) -> None:
    # a "separator" that finds no vocals at all: the clip must then count as having no speech
    module = types.ModuleType("silencing_separator")
    module.make = lambda: (lambda audio, sample_rate: np.zeros_like(audio))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    silenced = load_config(CurationConfig, None, [f"annotations.wav2vec2_dir={cfg.annotations.wav2vec2_dir}",
                                                  f"annotations.insightface_dir={cfg.annotations.insightface_dir}",
                                                  "speech.separator=silencing_separator:make"])
    info = fixture_by_variant["in_sync"]
    (row,) = process_source_safely(parse_source(str(info.path), tmp_path), tmp_path, silenced)
    assert row.reason == reasons.NO_SPEECH and row.speech_ratio == 0.0


def test_the_audio_features_are_of_the_vocals(outcomes, cfg) -> None:
    from foundation.audio_features import load_wav2vec2, wav2vec2_features

    out, _ = outcomes
    sample = _samples(out)[0]
    model, extractor = load_wav2vec2(cfg.annotations.wav2vec2_dir)
    stored = schema.decode_npy(sample[schema.KEY_AUDIO_FEATURES]).astype(np.float32)
    of = {key: wav2vec2_features(sf.read(io.BytesIO(sample[key]), dtype="float32")[0], model, extractor).numpy()
          for key in (schema.KEY_VOCALS, schema.KEY_AUDIO)}
    error = {key: np.abs(features - stored).max() for key, features in of.items()}
    assert error[schema.KEY_VOCALS] < 0.1 * error[schema.KEY_AUDIO], error  # WAV and float16 rounding aside
