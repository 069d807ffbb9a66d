"""wav2vec2 features aligned to the video: every transformer layer's hidden states at 25 fps.

Any encoder of the wav2vec2 family loads here (wav2vec2, HuBERT, data2vec-audio, WavLM: a CNN front
end `feature_extractor` followed by a transformer encoder), e.g. facebook/wav2vec2-base-960h or
TencentGameMate/chinese-wav2vec2-base; its width and layer count come from its config
(foundation.audio_encoder records which encoder made a clip's features).

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
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, PreTrainedModel, Wav2Vec2FeatureExtractor

from foundation.config import ConfigError

SAMPLE_RATE = 16000
FPS = 25
MIN_SAMPLES = 400  # one receptive field of the wav2vec2 CNN front end
# What a loadable wav2vec2 folder holds (foundation.hub.model_folder groups): config, weights, feature extractor.
WAV2VEC2_FILES = (("config.json",), ("model*.safetensors", "pytorch_model*.bin"), ("preprocessor_config.json",))
# model_type of the encoders with a wav2vec2-style CNN front end and per-layer hidden states
ENCODER_TYPES = ("wav2vec2", "hubert", "data2vec-audio", "wavlm")


def num_frames(n_samples: int, fps: int = FPS, sample_rate: int = SAMPLE_RATE) -> int:
    """Video frames covering n_samples of audio: ceil(n_samples / sample_rate * fps)."""
    return -(-n_samples * fps // sample_rate)


def encoder_config(path: str | Path) -> dict:
    """The config of a local encoder folder; ConfigError unless it is of the wav2vec2 family."""
    config = AutoConfig.from_pretrained(str(path))
    if config.model_type not in ENCODER_TYPES:
        raise ConfigError(f"{path} holds a {config.model_type!r} model, not an audio encoder of the wav2vec2 family "
                          f"({', '.join(ENCODER_TYPES)})")
    return config.to_dict()


def load_wav2vec2(path: str | Path, device: str | torch.device = "cpu") -> tuple[PreTrainedModel, Wav2Vec2FeatureExtractor]:
    """A local encoder folder (model + feature extractor saved with save_pretrained), any ENCODER_TYPES."""
    encoder_config(path)
    model = AutoModel.from_pretrained(str(path)).to(device).eval()
    return model, AutoFeatureExtractor.from_pretrained(str(path))


@torch.no_grad()
def wav2vec2_features(
    waveform: np.ndarray,
    model: PreTrainedModel,
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
    # the input embedding, then one entry per transformer layer
    return torch.stack(out.hidden_states[-model.config.num_hidden_layers:], dim=2)[0].float().cpu()
