"""Small stand-ins for every pretrained base, in the real folder layout (see model.pretrained).

They let tests and the demo run the exact loading code of real weights without any download:
- unet/: diffusers save_pretrained at the preset's sizes
- vae/: at the tiny preset's sizes a copy of `examples/standin_vae/`, a tiny VAE trained on the bundled
  media (made by `python -m examples.train_standin_vae`) so that training can learn; random otherwise
- motion_module/mm_sd_v15_v2.ckpt: a state dict in AnimateDiff's layout
- wav2vec2/: transformers Wav2Vec2Model + Wav2Vec2FeatureExtractor (`write_audio_encoder` writes any other
  wav2vec2-family encoder, e.g. HuBERT of another width, for the tests)
- whisper/ (only with `tiny --language CODE`): a tiny WhisperForConditionalGeneration whose language
  detection always answers CODE (`write_whisper`), the stand-in of curation's language identification
- insightface/models/: ONNX files insightface routes like the real ones (a 9-output SCRFD-style
  detector and a 112x112 -> 512 ArcFace-style recogniser). The detector's score head is constant
  and low, so it never finds a face and identity falls back to its documented no-face value.
- uvr/: an MDX-Net vocal model in Kim_Vocal_2's contract (foundation.vocals) with the model data
  audio-separator looks up by the file's MD5, so the real audio-separator loading and MDX inference
  run on it. It is a fixed spectral band-pass (the voice band), not a separator.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch import nn
from transformers import (AutoConfig, AutoModel, GenerationConfig, Wav2Vec2FeatureExtractor, WhisperConfig,
                          WhisperFeatureExtractor, WhisperForConditionalGeneration)

from foundation.audio_features import SAMPLE_RATE
from foundation.identity import EMBED_DIM
from foundation.vocals import MODEL_FILE, MODEL_RATE, model_hash
from model.unet_layout import unet_levels
from model.motion_checkpoint import to_animatediff_state_dict
from model.motion_module import build_motion_modules
from model.presets import Preset

STANDIN_VAE = Path(__file__).parent / "standin_vae"
# Whisper's language tokens the stand-in knows, in the real vocabulary's order (ids are the stand-in's own)
WHISPER_LANGUAGES = ("en", "zh", "de", "es", "ru", "ko", "fr", "ja")
STRIDES = (8, 16, 32)
ANCHORS = 2


class _TinyDetector(nn.Module):
    """SCRFD's output contract: per stride, scores (N, 1), boxes (N, 4), keypoints (N, 10), N = h*w*2."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 8, stride=8)
        self.down = nn.ModuleList([nn.Identity(), nn.Conv2d(8, 8, 2, stride=2), nn.Conv2d(8, 8, 2, stride=2)])
        self.heads = nn.ModuleList(nn.Conv2d(8, ANCHORS * n, 1) for n in (1, 4, 10))
        nn.init.zeros_(self.heads[0].weight)
        nn.init.constant_(self.heads[0].bias, -10.0)  # sigmoid ~ 5e-5: never a face

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats, x = [], self.stem(image)
        for down in self.down:
            x = down(x)
            feats.append(x)
        outs = []
        for head, width in zip(self.heads, (1, 4, 10)):
            for feat in feats:
                y = head(feat).permute(0, 2, 3, 1).reshape(-1, width)
                outs.append(torch.sigmoid(y) if width == 1 else y)
        return tuple(outs)


class _TinyRecogniser(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 8, stride=8)
        self.fc = nn.Linear(8 * 14 * 14, EMBED_DIM)

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(face)).flatten(1))


def _export_onnx(module: nn.Module, example: torch.Tensor, path: Path, outputs: list[str], dynamic: dict) -> None:
    torch.onnx.export(
        module.eval(),
        (example,),
        str(path),
        input_names=["input.1"],
        output_names=outputs,
        dynamic_axes=dynamic,
        opset_version=17,
        dynamo=False,
    )


def write_insightface(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{kind}_{s}" for kind in ("score", "bbox", "kps") for s in STRIDES]
    _export_onnx(_TinyDetector(), torch.zeros(1, 3, 128, 128), folder / "det_tiny.onnx", names,
                 {"input.1": {2: "height", 3: "width"}, **{n: {0: "anchors"} for n in names}})
    _export_onnx(_TinyRecogniser(), torch.zeros(1, 3, 112, 112), folder / "rec_tiny.onnx", ["embedding"],
                 {"input.1": {0: "batch"}, "embedding": {0: "batch"}})


# Kim_Vocal_2's parameters in UVR's model data (mdx_model_data.json): spectrogram bins fed to the model,
# log2 of its frames per chunk, FFT size, output gain.
KIM_VOCAL_2 = {"compensate": 1.009, "mdx_dim_f_set": 3072, "mdx_dim_t_set": 8, "mdx_n_fft_scale_set": 7680,
               "primary_stem": "Vocals"}
VOICE_BAND_HZ = (100.0, 4000.0)


class _BandPass(nn.Module):
    """MDX-Net's contract: (batch, 4, dim_f, dim_t) spectrogram (real/imag of two channels) in and out."""

    def __init__(self) -> None:
        super().__init__()
        hz = torch.arange(KIM_VOCAL_2["mdx_dim_f_set"]) * MODEL_RATE / KIM_VOCAL_2["mdx_n_fft_scale_set"]
        band = ((hz >= VOICE_BAND_HZ[0]) & (hz <= VOICE_BAND_HZ[1])).float()
        self.register_buffer("band", band.view(1, 1, -1, 1))

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        return spectrogram * self.band


def write_vocal_separator(folder: Path) -> None:
    """The stand-in MDX model plus the three model-data files audio-separator reads from its folder."""
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / MODEL_FILE
    shape = (1, 4, KIM_VOCAL_2["mdx_dim_f_set"], 2 ** KIM_VOCAL_2["mdx_dim_t_set"])
    torch.onnx.export(_BandPass().eval(), (torch.zeros(shape),), str(model), input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                      opset_version=17, dynamo=False)
    digest = model_hash(model)
    lists = ("vr_download_list", "mdx_download_list", "mdx_download_vip_list", "demucs_download_list",
             "mdx23c_download_list", "mdx23c_download_vip_list", "roformer_download_list")
    checks = {name: {} for name in lists} | {"mdx_download_list": {"MDX-Net Model: Kim Vocal 2": MODEL_FILE}}
    (folder / "download_checks.json").write_text(json.dumps(checks, indent=1))
    (folder / "mdx_model_data.json").write_text(json.dumps({digest: KIM_VOCAL_2}, indent=1))
    (folder / "vr_model_data.json").write_text("{}")


def write_vae(preset: Preset, folder: Path) -> None:
    """The trained tiny VAE where the preset has its sizes (scaling factor aside), else random weights."""
    trained = AutoencoderKL.load_config(STANDIN_VAE)
    if all(trained.get(key) == value for key, value in preset.vae.items() if key != "scaling_factor"):
        AutoencoderKL.from_pretrained(STANDIN_VAE).save_pretrained(folder)
    else:
        AutoencoderKL(**preset.vae).save_pretrained(folder)


def write_standins(preset: Preset, to: Path, seed: int = 0, language: str = "") -> None:
    """Base weights at the preset's sizes in the layout `hallo-weights fetch` writes:
    random, except the tiny VAE (see `write_vae`); with `language`, the Whisper stand-in answering it."""
    torch.manual_seed(seed)
    UNet2DConditionModel(**preset.unet).save_pretrained(to / "unet")
    write_vae(preset, to / "vae")
    motion = build_motion_modules(
        unet_levels(preset.unet), preset.motion_heads, preset.motion_max_len, int(preset.unet["norm_num_groups"])
    )
    with torch.no_grad():  # a trained module is not the identity: give proj_out weights too
        for _, module in motion.items():
            nn.init.normal_(module.proj_out.weight, std=0.02)
    (to / "motion_module").mkdir(parents=True, exist_ok=True)
    torch.save(to_animatediff_state_dict(motion), to / "motion_module" / "mm_sd_v15_v2.ckpt")
    write_audio_encoder(to / "wav2vec2", preset.wav2vec2)
    write_insightface(to / "insightface" / "models")
    write_vocal_separator(to / "uvr")
    if language:
        write_whisper(to / "whisper", language)


def write_audio_encoder(folder: Path, sizes: dict, model_type: str = "wav2vec2") -> None:
    """A random wav2vec2-family encoder (`model_type`: wav2vec2, hubert, data2vec-audio, wavlm) with its feature
    extractor, as save_pretrained writes the real ones."""
    AutoModel.from_config(AutoConfig.for_model(model_type, **sizes)).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0, do_normalize=True, return_attention_mask=False
    ).save_pretrained(folder)


def write_whisper(folder: Path, language: str) -> None:
    """A tiny Whisper whose language detection always answers `language` with probability ~1.

    The decoder's final layer norm maps every input to one vector, which the tied output projection scores
    highest for `language`'s token; everything else is the real classes' random init. The generation config
    carries `lang_to_id` and the start token as the real checkpoints' do.
    """
    if language not in WHISPER_LANGUAGES:
        raise ValueError(f"the Whisper stand-in knows {', '.join(WHISPER_LANGUAGES)}, not {language!r}")
    first = 8  # ids 0..7: ordinary tokens, then the start token, then the language tokens
    config = WhisperConfig(vocab_size=first + 1 + len(WHISPER_LANGUAGES), d_model=16, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                           num_mel_bins=80, max_source_positions=1500, max_target_positions=16, pad_token_id=0,
                           bos_token_id=first, eos_token_id=1, decoder_start_token_id=first)
    model = WhisperForConditionalGeneration(config)
    lang_to_id = {f"<|{code}|>": first + 1 + i for i, code in enumerate(WHISPER_LANGUAGES)}
    with torch.no_grad():
        norm = model.model.decoder.layer_norm
        norm.weight.zero_()
        norm.bias.copy_(torch.nn.functional.one_hot(torch.tensor(0), config.d_model).float())
        model.model.decoder.embed_tokens.weight[lang_to_id[f"<|{language}|>"], 0] = 20.0
    model.generation_config = GenerationConfig(decoder_start_token_id=first, lang_to_id=lang_to_id, is_multilingual=True)
    model.save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)


if __name__ == "__main__":
    from examples.standins_cli import main

    sys.exit(main())
