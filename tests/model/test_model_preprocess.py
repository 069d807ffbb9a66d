"""Generation inputs: wav2vec2 features at the video rate, identity stand-ins, the portrait crop."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from foundation.audio_features import load_wav2vec2, num_frames, wav2vec2_features
from foundation.identity import IdentityEncoder
from foundation.media_io import read_audio
from model.portrait import prepare_portrait
from model.presets import TINY_WAV2VEC2


@pytest.mark.parametrize("n_samples,frames", [(16000, 25), (16001, 26), (640, 1), (641, 2), (100, 1)])
def test_frame_count_matches_the_video(n_samples, frames):
    assert num_frames(n_samples) == frames


def test_features_have_every_layer_at_25_fps(tiny_base, short_speech):
    model, extractor = load_wav2vec2(tiny_base / "wav2vec2")
    waveform, rate = read_audio(short_speech, 16000)
    feats = wav2vec2_features(waveform[0], model, extractor)
    assert rate == 16000
    assert feats.shape == (num_frames(waveform.shape[1]), TINY_WAV2VEC2["num_hidden_layers"], TINY_WAV2VEC2["hidden_size"])
    assert feats.shape[0] == 30 and feats.dtype == torch.float32
    # deeper layers differ from shallower ones: these are the per-layer hidden states
    assert not torch.allclose(feats[:, 0], feats[:, -1])
    assert torch.equal(feats, wav2vec2_features(waveform[0], model, extractor))


def test_insightface_loads_the_standins_and_falls_back_to_zero(tiny_base, portrait):
    encoder = IdentityEncoder(tiny_base / "insightface" / "models")
    assert type(encoder.app.models["detection"]).__name__ == "SCRFD"
    assert type(encoder.app.models["recognition"]).__name__ == "ArcFaceONNX"
    image = cv2.cvtColor(cv2.imread(str(portrait)), cv2.COLOR_BGR2RGB)
    embedding, found = encoder.embed(image)
    assert not found and embedding.shape == (512,) and not embedding.any()
    assert encoder.app.models["recognition"].get_feat(cv2.resize(image, (112, 112))).shape == (1, 512)


def test_portrait_crop_follows_the_face(portrait):
    image = cv2.cvtColor(cv2.imread(str(portrait)), cv2.COLOR_BGR2RGB)
    crop = prepare_portrait(image, 256)
    assert crop.image.shape == (256, 256, 3) and crop.landmarks.shape == (478, 2)
    assert (crop.landmarks > 0).all() and (crop.landmarks < 256).all()
    face_w = np.ptp(crop.landmarks[:, 0])
    assert 0.3 < face_w / 256 < 0.6  # the crop is about 2.2 face sizes wide
    blank = prepare_portrait(np.zeros((90, 120, 3), np.uint8), 64)
    assert blank.landmarks is None and blank.image.shape == (64, 64, 3)
