"""Long audio: the video lasts as long as the audio to the frame, the clips chain through their motion frames,
memory stays flat as the audio grows, wav2vec2's windowed front end gives the whole pass's features, and a
run without a terminal logs its progress."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

import foundation.audio_features as audio_features
from foundation.audio_features import SAMPLE_RATE, num_frames
from foundation.media_io import read_video
from model.generate import prepare
from model.generate_config import GenerateConfig
from model.presets import get_preset

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "examples" / "assets"
FRAME_BYTES = 64 * 64 * 3  # one tiny-preset frame

# Runs model.generate.main in this child with tracemalloc on; its peak is reset once the models are loaded
# and the audio features computed, so the second number is the clip loop's and the writer's own.
CHILD = """
import json, resource, sys, tracemalloc
import model.generate as generate
prepare = generate.prepare
def prepared(*args, **kwargs):
    out = prepare(*args, **kwargs)
    tracemalloc.reset_peak()
    return out
generate.prepare = prepared
tracemalloc.start()
code = generate.main(sys.argv[1:])
print(json.dumps({"code": code, "loop_peak": tracemalloc.get_traced_memory()[1],
                  "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _speech(seconds: float, path: Path) -> Path:
    """Real speech looped to `seconds` (a length that is no whole number of clips)."""
    data, rate = sf.read(ASSETS / "speech_0870.wav", dtype="float32")
    sf.write(path, np.resize(data, int(seconds * rate)), rate)
    return path


def _generate(weights: Path, image: Path, audio: Path, out: Path) -> tuple[dict, str]:
    args = ["--weights", str(weights), "--image", str(image), "--audio", str(audio), "--out", str(out),
            "--steps", "1", "--guidance-scale", "1", "--set", "cpu_threads=1"]
    # glibc raises its mmap threshold after freeing a large block, so whether the vocal separator's audio-length
    # arrays land on the heap (and stay resident) depends on what ran before: the peak of one run then moves by
    # 40 MB with unrelated code. A fixed threshold hands freed large arrays back, so the peak is what was live.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MALLOC_MMAP_THRESHOLD_": str(64 * 1024)}
    done = subprocess.run([sys.executable, "-c", CHILD, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_long_audio_gives_a_video_as_long_as_it_with_flat_memory(tiny_weights, portrait, tmp_path):
    runs = {}
    for seconds in (2.03, 20.03):  # 51 and 501 frames: the last clip of 8 holds 3 and 5 of them
        audio = _speech(seconds, tmp_path / f"{seconds}.wav")
        out = tmp_path / f"{seconds}.mp4"
        measured, log = _generate(tiny_weights, portrait, audio, out)
        frames = read_video(out, 25)
        assert len(frames) == num_frames(sf.info(audio).frames) == int(np.ceil(seconds * 25))
        runs[seconds] = measured
    short, long = runs[2.03], runs[20.03]
    # Holding the frames (or a list of clips) would grow the loop's peak by the 450 extra frames, twice over
    # for the concatenation (11 MB); streaming them to the encoder leaves the audio the writer muxes, read
    # whole (18 s more: 1.2 MB a copy, about 3 of them while it is decoded).
    extra_frames = (num_frames(int(20.03 * SAMPLE_RATE)) - num_frames(int(2.03 * SAMPLE_RATE))) * FRAME_BYTES
    assert long["loop_peak"] - short["loop_peak"] < extra_frames, runs
    assert long["max_rss_kb"] - short["max_rss_kb"] < 60 * 1024, runs  # the whole process, wav2vec2 included
    # No terminal (captured stderr): a log line every 10 clips and at the last, with the ETA.
    assert "clip 10/63 done" in log and "clip 63/63 done" in log and "ETA 0:00:00" in log


def test_each_clip_s_motion_frames_are_the_previous_clip_s_last_frames(tiny_weights, portrait, tmp_path):
    cfg = GenerateConfig(weights=str(tiny_weights), image=str(portrait), audio=str(_speech(1.5, tmp_path / "a.wav")),
                         steps=1, progress=False)
    pipeline, reference, features, settings = prepare(cfg)
    encoded = []
    encode = pipeline._encode
    pipeline._encode = lambda pixels: encoded.append(pixels.clone()) or encode(pixels)
    clips = list(pipeline.stream(reference, features, settings, progress=False))
    m = settings.motion_frames
    assert m > 0 and len(clips) == 5 and [len(c) for c in clips] == [8, 8, 8, 8, 6]  # 38 frames
    motion = encoded[1:]  # the first encode is the reference image's
    assert len(motion) == len(clips) - 1
    for previous, pixels in zip(clips, motion):
        restored = ((pixels.permute(0, 2, 3, 1) + 1) * 127.5).numpy()
        assert np.abs(restored - previous[-m:]).max() <= 0.5 + 1e-3  # the same frames, before rounding to 8 bits


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_windowed_wav2vec2_front_end_gives_the_whole_pass_features(norm, monkeypatch):
    torch.manual_seed(0)
    model = Wav2Vec2Model(Wav2Vec2Config(**{**get_preset("tiny").wav2vec2, "feat_extract_norm": norm})).eval()
    extractor = Wav2Vec2FeatureExtractor()
    data, _ = sf.read(ASSETS / "speech_0870.wav", dtype="float32")
    waveform = np.resize(data, 7 * SAMPLE_RATE + 123)
    calls = []  # the samples each call of the first conv layer sees
    model.feature_extractor.conv_layers[0].conv.register_forward_hook(lambda _m, args, _out: calls.append(args[0].shape[-1]))
    whole = audio_features.wav2vec2_features(waveform, model, extractor)
    assert calls[:-1] == [len(waveform)]  # one pass (and the stub of the model's own forward)
    calls.clear()
    monkeypatch.setattr(audio_features, "CNN_WINDOW_S", 1.3)
    windowed = audio_features.wav2vec2_features(waveform, model, extractor)
    assert len(calls) > 5 and max(calls) <= 1.3 * SAMPLE_RATE + 400
    assert whole.shape == windowed.shape == (num_frames(len(waveform)), 4, 32)
    assert torch.allclose(whole, windowed, atol=1e-4), (whole - windowed).abs().max()
    assert not torch.allclose(whole[:10], whole[-10:])  # features that differ along the audio
