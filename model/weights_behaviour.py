"""How a set of weights computes: the choices where Hallo's released code and this project may differ.

Recorded in every weights folder (`weights.yaml`, section `behaviour`) so that generation, validation
and fine-tuning run the weights the way they were trained. A converted Hallo checkpoint records
Hallo's values (`HALLO`); weights trained here record the project's (the defaults, or what the run
inherited from `model.init_from` and `model.behaviour`). The README says why each default is chosen.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from foundation.config import ConfigError, from_mapping, opt


@dataclass
class ModelBehaviour:
    motion_in_plain_blocks: bool = opt(
        True, "run the motion modules of the blocks without cross-attention (the 8x8 level at SD-1.5 size), in "
        "training and generation; Hallo's released model skips them (they never trained there)")
    sampling_beta_schedule: Literal["scaled_linear", "linear"] = opt(
        "scaled_linear", "beta schedule of the sampler (training always uses scaled_linear); Hallo samples with linear")
    reference_token_pairing: Literal["per_branch", "hallo_tiled"] = opt(
        "per_branch", "the ReferenceNet pass under guidance: each branch with its own face tokens and reference "
        "features (per_branch), or Hallo's batch tiling (hallo_tiled): token sets alternate over the reference and "
        "motion frames, and the conditional frames alternate between the two branches' reference features")
    reference_bank_dtype: Literal["compute", "float16"] = opt(
        "compute", "reference and motion-frame features as the model computes them (compute), or rounded through "
        "float16 before the denoiser reads them (float16, as Hallo does even in float32); training too")
    audio_pad_frames: int = opt(
        0, "generation: zero-pad the waveform to a multiple of this many frames before wav2vec2 and clamp the audio "
        "windows over the padded sequence (Hallo: 16, its clip length); 0 = no padding, windows clamped to the audio")
    uncond_face_region: Literal["drop", "keep"] = opt(
        "drop", "guidance's unconditional branch drops the face-locator features (drop, as Hallo) or keeps them")
    guidance_min_timestep: int = opt(
        600, "classifier-free guidance runs only on the sampling steps at or above this timestep (of 1000): the "
        "noisier steps, where the mouth's opening and the pose are decided; the rest take the conditional "
        "prediction alone. 0 = every step, as Hallo", low=0, high=1000)
    separate_vocals: bool = opt(
        True, "generation separates the driving audio's vocals (audio-separator, MDX-Net Kim_Vocal_2; weights.yaml "
        "`vocal_separator`) before wav2vec2, as the training features were (Hallo; curation when its separator is "
        "found); the video keeps the original audio")
    sampling_preset: Literal["hallo", "balanced", "fast"] = opt(
        "balanced", "generation's sampling preset when none is asked for (model/scheduler.py PRESETS): hallo = 40 "
        "DDIM steps guided on every step, as Hallo samples; balanced (20 DPM-Solver++ steps) and fast (8 DDIM steps) guide "
        "the steps guidance_min_timestep says")
    temporal: bool = opt(
        True, "the motion and audio modules are trained (stage-2 export, Hallo); false for a stage-1 export, "
        "which then generates without them")

    def validate(self) -> None:
        if self.audio_pad_frames < 0:
            raise ConfigError("config key 'audio_pad_frames' must be >= 0")


# What Hallo's released code does (README: Use Hallo's released weights, Behaviours); a converted
# net.pth records these.
HALLO = dataclasses.replace(
    ModelBehaviour(),
    motion_in_plain_blocks=False,
    sampling_beta_schedule="linear",
    reference_token_pairing="hallo_tiled",
    reference_bank_dtype="float16",
    audio_pad_frames=16,
    guidance_min_timestep=0,
    sampling_preset="hallo",
)


def with_overrides(behaviour: ModelBehaviour, overrides: dict[str, Any], key: str = "model.behaviour") -> ModelBehaviour:
    """`behaviour` with some fields replaced, checked like a config file (ConfigError names a bad key or value)."""
    return from_mapping(ModelBehaviour, {**dataclasses.asdict(behaviour), **overrides}, prefix=f"{key}.")
