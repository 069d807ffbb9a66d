"""wav2vec2 features aligned to the video: every transformer layer's hidden states at 25 fps.

As in the reference, the CNN features are linearly interpolated to ceil(n_samples / 16000 * 25)
frames before the transformer encoder, so the encoder itself runs at the video frame rate and a clip
of N video frames has exactly N feature frames. No vocal separation is applied (the reference runs
an MDX-Net separator first); curation keeps speech-dominated clips instead.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

SAMPLE_RATE = 16000
FPS = 25
MIN_SAMPLES = 400  # one receptive field of the wav2vec2 CNN front end
# What a loadable wav2vec2 folder holds (foundation.hub.model_folder groups): config, weights, feature extractor.
WAV2VEC2_FILES = (("config.json",), ("model*.safetensors", "pytorch_model*.bin"), ("preprocessor_config.json",))


def num_frames(n_samples: int, fps: int = FPS, sample_rate: int = SAMPLE_RATE) -> int:
    """Video frames covering n_samples of audio: ceil(n_samples / sample_rate * fps)."""
    return -(-n_samples * fps // sample_rate)


def load_wav2vec2(path: str | Path, device: str | torch.device = "cpu") -> tuple[Wav2Vec2Model, Wav2Vec2FeatureExtractor]:
    """A local wav2vec2 folder (model + feature extractor saved with save_pretrained)."""
    model = Wav2Vec2Model.from_pretrained(str(path)).to(device).eval()
    return model, Wav2Vec2FeatureExtractor.from_pretrained(str(path))


@torch.no_grad()
def wav2vec2_features(
    waveform: np.ndarray,
    model: Wav2Vec2Model,
    feature_extractor: Wav2Vec2FeatureExtractor,
    fps: int = FPS,
    pad_to_multiple: int = 0,
) -> torch.Tensor:
    """16 kHz mono float waveform -> (frames, layers, dim) float32 on the CPU.

    pad_to_multiple > 0 zero-pads the normalised waveform to a whole number of that many video frames
    first, as the reference's generation does (so the features run on past the audio's end).
    """
    frames = num_frames(len(waveform), fps, SAMPLE_RATE)
    if frames == 0:
        raise ValueError("empty waveform")
    waveform = np.pad(np.asarray(waveform, np.float32), (0, max(0, MIN_SAMPLES - len(waveform))))
    inputs = feature_extractor(waveform, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_values
    if pad_to_multiple > 0:
        extra = -frames % pad_to_multiple
        inputs = F.pad(inputs, (0, extra * (SAMPLE_RATE // fps)))
        frames += extra
    device = next(model.parameters()).device

    def to_video_rate(_module: torch.nn.Module, _inputs: tuple, cnn: torch.Tensor) -> torch.Tensor:
        # (batch, channels, cnn_frames) -> (batch, channels, video frames)
        return F.interpolate(cnn, size=frames, mode="linear", align_corners=True)

    hook = model.feature_extractor.register_forward_hook(to_video_rate)
    try:
        out = model(inputs.to(device, model.dtype), output_hidden_states=True)
    finally:
        hook.remove()
    return torch.stack(out.hidden_states[1:], dim=2)[0].float().cpu()
