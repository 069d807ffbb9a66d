"""wav2vec2 features aligned to the video: every transformer layer's hidden states at 25 fps.

Any encoder of the wav2vec2 family loads here (wav2vec2, HuBERT, data2vec-audio, WavLM: a CNN front
end `feature_extractor` followed by a transformer encoder), e.g. facebook/wav2vec2-base-960h or
TencentGameMate/chinese-wav2vec2-base; its width and layer count come from its config
(foundation.audio_encoder records which encoder made a clip's features).

As in the reference, the CNN features are linearly interpolated to ceil(n_samples / 16000 * 25)
frames before the transformer encoder, so the encoder itself runs at the video frame rate and a clip
of N video frames has exactly N feature frames. No vocal separation is applied (the reference runs
an MDX-Net separator first); curation keeps speech-dominated clips instead.

Long audio: the CNN front end holds 512 channels at 3,200 steps a second (wav2vec2-base: about 16 MB
a second of audio at its peak, 10 GB for ten minutes), so it runs on CNN_WINDOW_S of audio at a time.
Each window is fed exactly the samples its output frames see, and wav2vec2-base's GroupNorm (over the
whole time axis of the first layer) is given the whole audio's statistics from a first pass: the features
are those of one pass over the whole audio, to float rounding. The transformer still attends over the
whole audio at the video rate (PyTorch's SDPA keeps that memory near linear: a few KB a frame per
layer; its compute grows with the square of the length).
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
CNN_WINDOW_S = 10.0  # seconds of audio per CNN front-end call (memory; see the module docstring)
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
    window = max(MIN_SAMPLES, int(CNN_WINDOW_S * SAMPLE_RATE))
    cnn = cnn_features(model, inputs.to(device, model.dtype), window)
    video_rate = F.interpolate(cnn, size=frames, mode="linear", align_corners=True)  # (1, channels, video frames)

    def precomputed(_module: torch.nn.Module, _inputs: tuple, _cnn: torch.Tensor) -> torch.Tensor:
        return video_rate

    # The model's own forward runs the rest (projection, encoder) on the CNN features computed above: its
    # front end is handed a one-window stub and its output replaced.
    hook = model.feature_extractor.register_forward_hook(precomputed)
    try:
        out = model(inputs[:, :MIN_SAMPLES].to(device, model.dtype), output_hidden_states=True)
    finally:
        hook.remove()
    # the input embedding, then one entry per transformer layer
    return torch.stack(out.hidden_states[-model.config.num_hidden_layers:], dim=2)[0].float().cpu()


def _receptive_field(model: PreTrainedModel) -> tuple[int, int]:
    """(stride, receptive field) of the CNN front end in samples: 320 and 400 for wav2vec2."""
    stride, field = 1, 1
    for kernel, step in zip(model.config.conv_kernel, model.config.conv_stride):
        field += (kernel - 1) * stride
        stride *= step
    return stride, field


def _frames_out(samples: int, model: PreTrainedModel) -> int:
    for kernel, step in zip(model.config.conv_kernel, model.config.conv_stride):
        samples = (samples - kernel) // step + 1
    return samples


def cnn_features(model: PreTrainedModel, inputs: torch.Tensor, window: int) -> torch.Tensor:
    """model.feature_extractor(inputs) for (1, samples) inputs, computed on at most about `window` samples at a time."""
    extractor, samples = model.feature_extractor, inputs.shape[1]
    if samples <= window:
        return extractor(inputs)
    stride, field = _receptive_field(model)
    total = _frames_out(samples, model)
    per_window = max(1, (window - field) // stride + 1)
    first, rest = extractor.conv_layers[0], extractor.conv_layers[1:]
    group_norm = model.config.feat_extract_norm == "group"
    stats = _first_layer_stats(first.conv, inputs, window) if group_norm else None
    parts = []
    for start in range(0, total, per_window):
        stop = min(total, start + per_window)
        hidden = inputs[:, None, start * stride:(stop - 1) * stride + field]  # exactly what frames start..stop see
        if group_norm:
            mean, var = stats
            norm = first.layer_norm
            hidden = first.conv(hidden)
            hidden = (hidden - mean) / torch.sqrt(var + norm.eps) * norm.weight[:, None] + norm.bias[:, None]
            hidden = first.activation(hidden)
        else:
            hidden = first(hidden)
        for layer in rest:
            hidden = layer(hidden)
        parts.append(hidden)
    return torch.cat(parts, dim=2)


def _first_layer_stats(conv: torch.nn.Conv1d, inputs: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (biased) variance over time of the first conv's output on the whole input, in
    windows: what wav2vec2-base's GroupNorm (one group per channel) normalises by in a single pass."""
    kernel, step = conv.kernel_size[0], conv.stride[0]
    total = (inputs.shape[1] - kernel) // step + 1
    per_window = max(1, (window - kernel) // step + 1)
    total_sum = total_squares = 0.0
    for start in range(0, total, per_window):
        stop = min(total, start + per_window)
        out = conv(inputs[:, None, start * step:(stop - 1) * step + kernel]).double()
        total_sum = total_sum + out.sum(dim=2)
        total_squares = total_squares + out.pow(2).sum(dim=2)
    mean = total_sum / total
    var = (total_squares / total - mean.pow(2)).clamp(min=0)
    return mean[..., None].to(inputs.dtype), var[..., None].to(inputs.dtype)
