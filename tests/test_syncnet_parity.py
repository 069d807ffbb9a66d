"""The whole SyncNet scoring path equals syncnet_python's, run from its own code.

The oracle is the `syncnet-python` package (PyPI, pinned in the Makefile, installed without its
dependencies): its `SyncNetPipeline._crop` frames the face track, its `SyncNetInstance.evaluate`
embeds, batches and measures. Both sides load one random-weight state dict (made by its own
`SyncNetModel.S`) and see the same decoded frames, face boxes and 16-bit audio. Only the file
plumbing around its functions differs: its crops are taken from the `cv2.VideoWriter` it writes
them to (before the lossy XVID encoding) and handed to `evaluate` as lossless image files.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
import torch
from scipy.io import wavfile

from curation.config import CurationConfig
from curation.faces import segment_faces
from curation.speech_sync_annotate import fill_missing_landmarks
from curation.media import iter_frames, load_audio, probe
from curation.pipeline import analyse
from foundation.syncnet import FaceTrack, SyncNetScorer, face_track_crops, landmark_boxes

FRAMES = 40  # 35 windows: enough for a meaningful curve, seconds on a CPU
VSHIFT = 15


@pytest.fixture(scope="module")
def syncnet_python():
    """The package's modules. Its `__init__` imports its file entry point, which needs ffmpeg-python
    and PySceneDetect < 0.7's `VideoManager` (this project has 0.7); neither is used here, so
    stand-ins fill those two imports if they are missing. Nothing of its scoring is replaced."""
    stubs = {}
    if importlib.util.find_spec("ffmpeg") is None:
        stubs["ffmpeg"] = types.ModuleType("ffmpeg")
    try:
        importlib.import_module("scenedetect.video_manager")
    except ImportError:
        stubs["scenedetect.video_manager"] = types.ModuleType("scenedetect.video_manager")
        stubs["scenedetect.video_manager"].VideoManager = None
    with pytest.MonkeyPatch.context() as patch:
        for name, module in stubs.items():
            patch.setitem(sys.modules, name, module)
        package = importlib.import_module("syncnet_python")
        yield types.SimpleNamespace(
            package=package,
            pipeline=importlib.import_module("syncnet_python.syncnet_pipeline"),
            instance=importlib.import_module("syncnet_python.SyncNetInstance"),
            model=importlib.import_module("syncnet_python.SyncNetModel"),
        )


@pytest.fixture(scope="module")
def random_weights(syncnet_python, tmp_path_factory) -> Path:
    """One random state dict in syncnet_python's own module layout, batch-norm statistics included."""
    torch.manual_seed(0)
    net = syncnet_python.model.S()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.normal_(1, 0.1)
                module.bias.normal_(0, 0.1)
    path = tmp_path_factory.mktemp("syncnet_weights") / "syncnet_v2.model"
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def face_track(fixture_by_variant) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Full-resolution RGB frames of a real fixture clip, its face boxes from our face step, and the
    audio under them as 16-bit samples."""
    cfg = CurationConfig()
    info = probe(fixture_by_variant["shifted_5"].path, cfg.media)
    (span,) = segment_faces(analyse(info, cfg).faces, 0, cfg.faces, info.fps)
    landmarks = fill_missing_landmarks(span.landmarks)[:FRAMES, :, :2] * np.array([info.width, info.height])
    frames = [frame for _, frame in iter_frames(info, 0, FRAMES)]
    audio = load_audio(info, 16000)[:FRAMES * 640]
    return frames, landmark_boxes(landmarks), np.round(audio * 32767).astype(np.int16)


def _their_crops(syncnet_python, frames, boxes, audio, work: Path, monkeypatch) -> np.ndarray:
    """syncnet_python's `_crop` on our frames and boxes; the crops it writes, as it writes them."""
    frame_paths = []
    for i, frame in enumerate(frames):
        frame_paths.append(str(work / f"frame{i:06d}.png"))
        cv2.imwrite(frame_paths[-1], cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))  # lossless: it reads them with imread
    wavfile.write(work / "speech.wav", 16000, audio)
    written: list[np.ndarray] = []
    real_writer = cv2.VideoWriter

    class RecordingWriter:
        def __init__(self, *args):
            self.writer = real_writer(*args)

        def write(self, image):
            written.append(image.copy())
            self.writer.write(image)

        def release(self):
            self.writer.release()

    monkeypatch.setattr(cv2, "VideoWriter", RecordingWriter)
    owner = types.SimpleNamespace(cfg=syncnet_python.pipeline.PipelineConfig(ffmpeg_bin=imageio_ffmpeg.get_ffmpeg_exe()))
    track = {"frame": np.arange(len(frames)), "bbox": boxes}
    syncnet_python.pipeline.SyncNetPipeline._crop(owner, track, frame_paths, str(work / "speech.wav"), work / "track")
    monkeypatch.undo()
    assert (work / "track.avi").is_file()  # its own ffmpeg steps ran too
    return np.stack(written)


def _their_scores(syncnet_python, crops, audio, weights, work: Path, monkeypatch) -> tuple[int, float, float, np.ndarray]:
    """syncnet_python's `evaluate` on a face track: (offset as it prints it, conf, min dist, curve)."""
    track_dir = work / "evaluate"
    track_dir.mkdir()
    for i, crop in enumerate(crops):
        # it globs *.jpg and decodes with imread, which goes by content: PNG keeps the pixels exact
        (track_dir / f"{i + 1:06d}.jpg").write_bytes(cv2.imencode(".png", crop)[1].tobytes())
    wavfile.write(track_dir / "audio.wav", 16000, audio)
    dists = []
    real_calc_pdist = syncnet_python.instance.calc_pdist

    def recording_calc_pdist(*args, **kwargs):
        result = real_calc_pdist(*args, **kwargs)
        dists.extend(result)
        return result

    monkeypatch.setattr(syncnet_python.instance, "calc_pdist", recording_calc_pdist)
    instance = syncnet_python.instance.SyncNetInstance(net=syncnet_python.model.S(), device="cpu")
    instance.loadParameters(str(weights))
    offset, conf, min_dist = instance.evaluate(types.SimpleNamespace(tmp_dir=str(track_dir), batch_size=20, vshift=VSHIFT))
    curve = torch.stack(dists, 1).mean(1).numpy()  # the per-offset mean that evaluate minimises
    return offset, conf, min_dist, curve


def test_scoring_path_equals_syncnet_python(syncnet_python, random_weights, face_track, tmp_path, monkeypatch) -> None:
    frames, boxes, audio = face_track
    theirs = _their_crops(syncnet_python, frames, boxes, audio, tmp_path, monkeypatch)
    ours = face_track_crops(frames, boxes)
    assert theirs.shape == ours.shape == (FRAMES, 224, 224, 3)
    np.testing.assert_array_equal(ours, theirs)

    their_offset, their_conf, their_min_dist, their_curve = _their_scores(
        syncnet_python, theirs, audio, random_weights, tmp_path, monkeypatch)
    (result,) = SyncNetScorer(random_weights, device="cpu").score(
        [FaceTrack(ours, audio.astype(np.float32) / 32768)], max_offset=VSHIFT)
    np.testing.assert_allclose(result.curve, their_curve, atol=1e-3)
    assert result.offset == -their_offset  # it prints vshift - argmin: the opposite sign
    assert result.confidence == pytest.approx(their_conf, abs=1e-3)
    assert result.min_dist == pytest.approx(their_min_dist, abs=1e-3)
    assert np.ptp(result.curve) > 1e-3  # a curve with a shape, not a constant that any path would match


def test_batches_across_tracks_do_not_change_scores(random_weights, face_track) -> None:
    frames, boxes, audio = face_track
    faces = face_track_crops(frames, boxes)
    signal = audio.astype(np.float32) / 32768
    spans = [(0, 12), (3, 12), (20, 30)]  # 7, 4 and 5 windows
    tracks = [FaceTrack(faces[a:b], signal[a * 640:b * 640]) for a, b in spans]
    together = SyncNetScorer(random_weights, device="cpu", batch=6).score(tracks, max_offset=3)  # batches straddle tracks
    alone = [SyncNetScorer(random_weights, device="cpu", batch=20).score([t], max_offset=3)[0] for t in tracks]
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a.curve, b.curve, atol=1e-4)
        assert a.offset == b.offset
    assert not np.allclose(together[0].curve, together[1].curve)  # the tracks' windows were not mixed up
