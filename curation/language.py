"""Spoken language of a clip, from Whisper's language detection (transformers' own Whisper classes).

Whisper decides the language the way its `detect_language` does: one decoder step from the start-of-
transcript token over the log-Mel spectrogram of (up to) 30 s of audio, softmax over the language tokens
only (`generation_config.lang_to_id`). Any multilingual Whisper checkpoint works (openai/whisper-base,
which `hallo-weights fetch --also whisper` puts into BASE/whisper, or -small for more accuracy);
an English-only one (`.en`) has no language tokens and is refused. The folder needs config.json,
generation_config.json, preprocessor_config.json and the weights; no tokenizer.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from curation.config import SpeechConfig
from foundation import hub
from foundation.config import ConfigError

log = logging.getLogger(__name__)

WHISPER_FILES: hub.Needs = (*hub.TRANSFORMERS, ("generation_config.json",), ("preprocessor_config.json",))
KEY = "speech.language_model"


def language_model_ref(cfg: SpeechConfig, base: str | Path) -> Optional[str]:
    """The language-identification model to use: speech.language_model, else BASE/whisper when it exists, else None."""
    if cfg.language_model:
        return cfg.language_model
    default = Path(base) / "whisper"
    return str(default) if default.is_dir() else None


def check_language_model(cfg: SpeechConfig, base: str | Path) -> Optional[Path]:
    """The model's local folder (None when there is none and none is needed); ConfigError naming the key when
    it is incomplete, or when speech.languages asks for a filter without a model."""
    ref = language_model_ref(cfg, base)
    if ref is None:
        if cfg.languages:
            raise ConfigError(f"config key 'speech.languages' keeps only {cfg.languages} but no language model is "
                              f"set ({KEY}) or found at {Path(base) / 'whisper'}: get one with "
                              "`hallo-weights fetch --to BASE --also whisper`")
        return None
    return hub.model_folder(ref, KEY, WHISPER_FILES)


class LanguageIdentifier:
    """Whisper, loaded once per worker; called on a clip's 16 kHz speech -> (language code, probability)."""

    def __init__(self, folder: str | Path, device: str = "cpu") -> None:
        from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

        self.model = WhisperForConditionalGeneration.from_pretrained(str(folder)).to(device).eval()
        self.features = WhisperFeatureExtractor.from_pretrained(str(folder))
        generation = self.model.generation_config
        lang_to_id = getattr(generation, "lang_to_id", None) or {}
        if not lang_to_id:
            raise ConfigError(f"config key '{KEY}': {folder} is not a multilingual Whisper (its generation_config.json "
                              "has no lang_to_id)")
        self.codes = [token.strip("<|>") for token in lang_to_id]
        self.token_ids = torch.tensor(list(lang_to_id.values()))
        self.start = int(generation.decoder_start_token_id)
        log.info("language identification: Whisper from %s, %d languages", folder, len(self.codes))

    @torch.no_grad()
    def __call__(self, audio: np.ndarray, sample_rate: int) -> tuple[str, float]:
        inputs = self.features(np.asarray(audio, np.float32), sampling_rate=sample_rate, return_tensors="pt")
        device = self.model.device
        logits = self.model(input_features=inputs.input_features.to(device, self.model.dtype),
                            decoder_input_ids=torch.tensor([[self.start]], device=device)).logits[0, -1]
        probs = logits[self.token_ids.to(device)].float().softmax(-1)
        best = int(probs.argmax())
        return self.codes[best], float(probs[best])


def kept(language: Optional[str], cfg: SpeechConfig) -> bool:
    """Whether speech.languages keeps a clip of `language` (all are kept when the list is empty)."""
    return not cfg.languages or language in cfg.languages
