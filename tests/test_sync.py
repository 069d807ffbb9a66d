"""Lip-sync scoring: syncnet_python's offset/confidence maths, the envelope fallback (what it can and
cannot tell), the verdicts of both backends, the audio correction, choosing the backend, and the
SyncNet backend loading syncnet_python-format weights and scoring a source's clips together."""
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds

from curation import reasons
from foundation import schema
from curation.config import CurationConfig, SyncConfig
from curation.faces import segment_faces
from examples.fixtures import SAMPLE_RATE, speech_loop, speech_track
from curation.media import iter_frames, probe
from curation.speech_sync_annotate import fill_missing_landmarks, preflight
from curation.pipeline import analyse, process_source_safely
from curation.sources import parse_source
from curation.sync import (MOUTH_CORNERS, LOWER_INNER_LIP, UPPER_INNER_LIP, ClipSignals, ClipSyncNet, EnvelopeScorer, SyncVerdict,
                           audio_window, judge_sync, loudness_db, make_scorer, resolve_backend)
from foundation.config import ConfigError, load_config
from foundation.syncnet import (SyncResult, feature_distance_curve, face_track_crops, landmark_boxes, load_syncnet,
                                mfcc_windows, summarize_curve)

HOP = SAMPLE_RATE // 25
N = 15


def test_offset_min_dist_and_confidence_of_a_curve() -> None:
    lags = np.arange(-N, N + 1)
    result = summarize_curve(np.abs(lags - 3) + 5.0)
    # min at lag 3; the sorted |lag - 3| values put 8 in the middle of the 31
    assert (result.offset, result.min_dist, result.confidence) == (3, 5.0, 8.0)
    with pytest.raises(ValueError):
        summarize_curve(np.zeros(30))


def _syncnet_python_curve(video: torch.Tensor, audio: torch.Tensor, vshift: int) -> torch.Tensor:
    """The curve as syncnet_python computes it (calc_pdist, then the mean over frames)."""
    padded = torch.nn.functional.pad(audio, (0, 0, vshift, vshift))
    dists = [torch.nn.functional.pairwise_distance(video[[i], :].repeat(2 * vshift + 1, 1), padded[i:i + 2 * vshift + 1])
             for i in range(len(video))]
    return torch.stack(dists, 1).mean(1)


@pytest.mark.parametrize("lag", [-6, 0, 4])
def test_feature_curve_matches_syncnet_python_and_the_sign_convention(lag: int) -> None:
    rng = np.random.default_rng(0)
    speech = rng.normal(size=(80, 16))
    video = speech[20:60]
    audio = speech[20 - lag:60 - lag]  # audio frame i + lag carries what video frame i shows
    curve = feature_distance_curve(video, audio, N)
    reference = _syncnet_python_curve(torch.from_numpy(video), torch.from_numpy(audio), N).numpy()
    np.testing.assert_allclose(curve, reference, rtol=1e-6)
    result = summarize_curve(curve)
    assert result.offset == lag  # positive: the audio lags
    assert N - int(np.argmin(reference)) == -lag  # what syncnet_python prints as "AV offset"
    assert result.min_dist < 1 and result.confidence > 3  # zero padding: the edge frames still count


def test_audio_window_moves_lagging_audio_back_in_sync() -> None:
    speech = np.arange(1, 41, dtype=np.float32).repeat(HOP)  # frame k of speech holds the value k + 1
    late = audio_window(speech, -3, 37, HOP)  # the same track 3 frames late (zeros first)
    assert late[:3 * HOP].max() == 0 and late[3 * HOP] == 1
    np.testing.assert_array_equal(audio_window(late, 5 + 3, 25 + 3, HOP), speech[5 * HOP:25 * HOP])
    assert audio_window(speech, 38, 42, HOP)[2 * HOP:].max() == 0  # past the end: zeros


@pytest.fixture(scope="module")
def in_sync_landmarks(fixture_by_variant) -> np.ndarray:
    """(frames, 478, 2) pixel landmarks of the in_sync fixture, from the real face step."""
    info = probe(fixture_by_variant["in_sync"].path, CurationConfig().media)
    analysis = analyse(info, CurationConfig())
    (span,) = segment_faces(analysis.faces, 0, CurationConfig().faces, info.fps)
    return fill_missing_landmarks(span.landmarks)[..., :2] * np.array([info.width, info.height], np.float32)


def _signals(landmarks: np.ndarray, audio: np.ndarray) -> ClipSignals:
    return ClipSignals(landmarks, audio, SAMPLE_RATE, 25, lambda: [])


def _loudness_mouth(speech: np.ndarray, frames: int) -> np.ndarray:
    """(frames, 478, 2) landmarks of a mouth whose opening IS the speech loudness: the envelope
    scorer's own model of speech, which real talking heads (and the fixtures) do not follow."""
    points = np.zeros((frames, 478, 2))
    points[:, MOUTH_CORNERS[0]], points[:, MOUTH_CORNERS[1]] = (200.0, 300.0), (240.0, 300.0)
    opening = np.clip((loudness_db(speech, SAMPLE_RATE, 25, frames) + 42) / 27, 0, 1)
    points[:, UPPER_INNER_LIP] = (220.0, 300.0)
    points[:, LOWER_INNER_LIP, 0] = 220.0
    points[:, LOWER_INNER_LIP, 1] = 300.0 + 18 * opening
    return points


@pytest.mark.parametrize("shift", [-7, -2, 0, 3, 5, 10])
def test_envelope_maths_recover_a_shift_on_its_own_model(shift: int) -> None:
    frames = 125
    speech = speech_track(frames / 25 + 1)
    landmarks = _loudness_mouth(speech, frames)
    scorer = EnvelopeScorer()
    (result,) = scorer.score_many([_signals(landmarks, audio_window(speech, -shift, frames - shift, HOP))], N)
    assert result.offset == shift and result.confidence > scorer.default_min_confidence, result


@pytest.mark.parametrize("shift", [0, 5, 10])
def test_envelope_cannot_confirm_sync_of_articulating_lips_so_the_fallback_keeps_them(in_sync_landmarks,
                                                                                     shift: int) -> None:
    """The fixture's lips articulate the speech (lead it, shape vowels) instead of following its
    loudness, like real talking heads, on which the envelope scored in-sync clips 2.5. Its score
    stays below its threshold, in sync or shifted, so the fallback keeps each clip unverified and
    moves no audio on a measurement it cannot trust."""
    frames = len(in_sync_landmarks)
    speech = speech_track(frames / 25 + 1)
    scorer = EnvelopeScorer()
    (result,) = scorer.score_many([_signals(in_sync_landmarks, audio_window(speech, -shift, frames - shift, HOP))], N)
    assert result.confidence < scorer.default_min_confidence, result
    assert judge_sync(result, SyncConfig(), scorer) == SyncVerdict(None, False, 0)


def test_envelope_scorer_rejects_unrelated_speech(in_sync_landmarks) -> None:
    frames = len(in_sync_landmarks)
    speech = speech_track(60.0)
    period = round(len(speech_loop()) / HOP)  # frames after which the bundled speech repeats
    starts = [s for s in range(frames, 1400, 50) if min(s % period, period - s % period) > 2 * N]
    scorer = EnvelopeScorer()
    confidences = [scorer.score(_signals(in_sync_landmarks, audio_window(speech, s, s + frames, HOP)), N).confidence
                   for s in starts]
    assert len(confidences) >= 15
    assert sum(c >= scorer.default_min_confidence for c in confidences) <= 1, np.round(confidences, 2)
    assert np.median(confidences) < 3.5


def _result(offset: int, confidence: float) -> SyncResult:
    return summarize_curve(-np.eye(2 * N + 1)[N + offset] * confidence)


def test_syncnet_verdicts_keep_only_confident_small_offsets() -> None:
    syncnet = types.SimpleNamespace(default_min_confidence=3.0, verifies=True)
    assert judge_sync(_result(2, 9), SyncConfig(), syncnet) == SyncVerdict(None, True, 2)  # kept, audio moved 2
    assert judge_sync(_result(2, 9), SyncConfig(max_abs_offset=1), syncnet) == SyncVerdict(reasons.OUT_OF_SYNC, False, 0)
    assert judge_sync(_result(0, 2), SyncConfig(), syncnet) == SyncVerdict(reasons.OUT_OF_SYNC, False, 0)
    assert judge_sync(_result(0, 2), SyncConfig(min_confidence=1.5), syncnet) == SyncVerdict(None, True, 0)


def test_fallback_verdicts_reject_only_confident_large_offsets() -> None:
    scorer = EnvelopeScorer()  # threshold 4.5
    assert judge_sync(_result(10, 9), SyncConfig(), scorer) == SyncVerdict(reasons.OUT_OF_SYNC, False, 0)  # caught
    assert judge_sync(_result(10, 3), SyncConfig(), scorer) == SyncVerdict(None, False, 0)  # unsure: kept, unverified
    assert judge_sync(_result(3, 9), SyncConfig(), scorer) == SyncVerdict(None, False, 3)  # sure of a small shift
    assert judge_sync(_result(3, 4), SyncConfig(), scorer) == SyncVerdict(None, False, 0)  # unsure: audio untouched
    assert judge_sync(_result(10, 3), SyncConfig(min_confidence=2.0), scorer).reason == reasons.OUT_OF_SYNC


def _syncnet_python_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under the names and shapes syncnet_python's SyncNetModel.S gives them."""
    gen = torch.Generator().manual_seed(seed)
    convs = {
        "netcnnaud": {0: (64, 1, 3, 3), 4: (192, 64, 3, 3), 8: (384, 192, 3, 3), 11: (256, 384, 3, 3),
                      14: (256, 256, 3, 3), 18: (512, 256, 5, 4)},
        "netcnnlip": {0: (96, 3, 5, 7, 7), 4: (256, 96, 1, 5, 5), 8: (256, 256, 1, 3, 3), 11: (256, 256, 1, 3, 3),
                      14: (256, 256, 1, 3, 3), 18: (512, 256, 1, 6, 6)},
    }
    state: dict[str, torch.Tensor] = {}

    def norm(prefix: str, channels: int) -> None:
        state[f"{prefix}.weight"] = 1 + 0.1 * torch.randn(channels, generator=gen)
        state[f"{prefix}.bias"] = 0.1 * torch.randn(channels, generator=gen)
        state[f"{prefix}.running_mean"] = 0.1 * torch.randn(channels, generator=gen)
        state[f"{prefix}.running_var"] = 1 + torch.rand(channels, generator=gen)
        state[f"{prefix}.num_batches_tracked"] = torch.tensor(1000)

    for net, layers in convs.items():
        for index, shape in layers.items():
            state[f"{net}.{index}.weight"] = torch.randn(shape, generator=gen) / np.sqrt(np.prod(shape[1:]))
            state[f"{net}.{index}.bias"] = torch.zeros(shape[0])
            norm(f"{net}.{index + 1}", shape[0])
    for net in ("netfcaud", "netfclip"):
        state[f"{net}.0.weight"] = torch.randn(512, 512, generator=gen) / np.sqrt(512)
        state[f"{net}.0.bias"] = torch.zeros(512)
        norm(f"{net}.1", 512)
        state[f"{net}.3.weight"] = torch.randn(1024, 512, generator=gen) / np.sqrt(512)
        state[f"{net}.3.bias"] = torch.zeros(1024)
    return state


@pytest.fixture(scope="module")
def syncnet_weights(tmp_path_factory) -> Path:
    """Random weights where `hallo-weights fetch` puts the real ones: BASE/syncnet/syncnet_v2.model."""
    path = tmp_path_factory.mktemp("base") / "syncnet" / "syncnet_v2.model"
    path.parent.mkdir()
    torch.save(_syncnet_python_state_dict(), path)
    return path


def test_syncnet_python_weights_load_into_the_architecture(syncnet_weights, tmp_path) -> None:
    model = load_syncnet(syncnet_weights)
    expected = _syncnet_python_state_dict()
    assert set(model.state_dict()) == set(expected)
    for name, value in model.state_dict().items():
        assert torch.equal(value, expected[name]), name
    with torch.no_grad():
        assert model.forward_lip(torch.zeros(2, 3, 5, 224, 224)).shape == (2, 1024)
        assert model.forward_aud(torch.zeros(2, 1, 13, 20)).shape == (2, 1024)
    broken = {k: v for k, v in expected.items() if not k.startswith("netfclip")}
    torch.save(broken, tmp_path / "broken.model")
    with pytest.raises(ValueError, match="not a syncnet_python SyncNet state dict"):
        load_syncnet(tmp_path / "broken.model")
    with pytest.raises(FileNotFoundError):
        load_syncnet(tmp_path / "missing.model")


def test_syncnet_backend_scores_the_clip_crops_along_the_mesh_track(syncnet_weights, in_sync_landmarks,
                                                                    fixture_by_variant) -> None:
    frames = 12  # 7 windows of 5 frames: enough to exercise the whole path on the CPU in seconds
    info = probe(fixture_by_variant["in_sync"].path, CurationConfig().media)
    crops = [frame for _, frame in iter_frames(info, 0, frames)]
    landmarks = in_sync_landmarks[:frames]
    faces = face_track_crops(crops, landmark_boxes(landmarks))
    assert faces.shape == (frames, 224, 224, 3) and faces.dtype == np.uint8
    windows = mfcc_windows(speech_track(1.0)[:frames * HOP], SAMPLE_RATE, frames - 5)
    assert windows.shape == (frames - 5, 1, 13, 20)
    scorer = ClipSyncNet(syncnet_weights, "cpu")
    (result,) = scorer.score_many([ClipSignals(landmarks, speech_track(1.0)[:frames * HOP], SAMPLE_RATE, 25,
                                               lambda: crops)], max_offset=3)
    assert result.curve.shape == (7,) and np.isfinite(result.curve).all()
    assert -3 <= result.offset <= 3 and result.confidence >= 0 and scorer.verifies


def test_backend_choice(syncnet_weights, tmp_path) -> None:
    assert resolve_backend(SyncConfig(), tmp_path).backend == "envelope"  # auto, nothing found
    found = resolve_backend(SyncConfig(), syncnet_weights.parents[1])  # BASE/syncnet/syncnet_v2.model
    assert (found.backend, found.weights) == ("syncnet", str(syncnet_weights))
    explicit = resolve_backend(SyncConfig(weights=str(syncnet_weights)), tmp_path)
    assert (explicit.backend, explicit.weights) == ("syncnet", str(syncnet_weights))
    assert resolve_backend(SyncConfig(backend="envelope", weights=str(syncnet_weights)), tmp_path).backend == "envelope"
    with pytest.raises(ConfigError, match="sync.weights"):  # named but missing: an error, not a silent fallback
        resolve_backend(SyncConfig(weights=str(tmp_path / "missing.model")), tmp_path)
    with pytest.raises(ConfigError, match="sync.weights"):
        resolve_backend(SyncConfig(backend="syncnet"), tmp_path)
    assert make_scorer(SyncConfig(), tmp_path).name == "envelope"


def test_preflight_resolves_auto_once_and_warns_about_the_fallback(annotation_overrides, syncnet_weights, tmp_path,
                                                                   caplog) -> None:
    cfg = load_config(CurationConfig, None, [*annotation_overrides, f"pretrained_dir={tmp_path}"])
    assert cfg.sync.backend == "auto"
    with caplog.at_level("WARNING"):
        assert preflight(cfg).sync.backend == "envelope"
    assert "no SyncNet weights" in caplog.text and "unverified" in caplog.text
    caplog.clear()
    found = preflight(load_config(CurationConfig, None, [*annotation_overrides,
                                                        f"pretrained_dir={syncnet_weights.parents[1]}"]))
    assert (found.sync.backend, found.sync.weights) == ("syncnet", str(syncnet_weights))
    assert "no SyncNet weights" not in caplog.text  # (this base has no vocal separator: that warning may stand)


def test_sync_config_is_checked_at_load() -> None:
    with pytest.raises(ConfigError, match="max_abs_offset"):
        load_config(CurationConfig, None, ["sync.max_offset=5", "sync.max_abs_offset=6"])
    with pytest.raises(ConfigError, match="sync.backend"):
        load_config(CurationConfig, None, ["sync.backend=lipreader"])
    with pytest.raises(ConfigError, match="media.fps"):  # auto may pick SyncNet, which needs 25 fps
        load_config(CurationConfig, None, ["media.fps=20"])
    load_config(CurationConfig, None, ["media.fps=20", "sync.backend=envelope"])


def test_a_sources_clips_are_scored_together(fixture_by_variant, tmp_path, monkeypatch) -> None:
    calls = []
    real = EnvelopeScorer.score_many

    def recording(self, clips, max_offset):
        calls.append(len(clips))
        return real(self, clips, max_offset)

    monkeypatch.setattr(EnvelopeScorer, "score_many", recording)
    source = str(fixture_by_variant["scene_cut"].path)  # two clips
    for batch_frames, expected in ((1000, [2]), (70, [1, 1])):
        cfg = load_config(CurationConfig, None, ["annotations.enabled=false", "sync.backend=envelope",
                                                 f"sync.batch_frames={batch_frames}"])
        out = tmp_path / str(batch_frames)
        rows = process_source_safely(parse_source(source, out), out, cfg)
        assert [r.status for r in rows] == ["accepted", "accepted"] and calls == expected, (rows, calls)
        calls.clear()


def test_syncnet_found_in_the_base_folder_judges_the_pipeline_and_decodes_each_clip_once(
        syncnet_weights, annotation_overrides, fixture_by_variant, tmp_path, monkeypatch) -> None:
    import curation.speech_sync_annotate

    decodes = []
    real_iter_frames = curation.speech_sync_annotate.iter_frames

    def counting_iter_frames(info, start, end, *args, **kwargs):
        decodes.append((start, end))
        return real_iter_frames(info, start, end, *args, **kwargs)

    monkeypatch.setattr(curation.speech_sync_annotate, "iter_frames", counting_iter_frames)
    # random weights give a random score: accept whatever they find, to follow the clip to its shard
    cfg = load_config(CurationConfig, None, [*annotation_overrides, f"pretrained_dir={syncnet_weights.parents[1]}",
                                             "sync.min_confidence=-1000", "sync.max_abs_offset=15", "sync.device=cpu"])
    info = fixture_by_variant["in_sync"]
    (row,) = process_source_safely(parse_source(str(info.path), tmp_path), tmp_path, cfg)
    assert row.status == "accepted", row
    assert row.sync_offset is not None and np.isfinite(row.sync_confidence)
    assert (row.sync_backend, row.sync_verified) == ("syncnet", True)
    assert decodes == [(0, 125)]  # the SyncNet crops, annotations and stored video share one decode
    (sample,) = wds.WebDataset(str(next((tmp_path / "shards").glob("*.tar"))), shardshuffle=False)
    meta = schema.check_sample(sample)
    assert (meta.sync_backend, meta.sync_verified) == ("syncnet", True)
    assert meta.audio_shift_frames == row.sync_offset
