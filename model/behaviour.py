"""How a set of weights computes: the choices where Hallo's released code and this project may differ.

Recorded in every weights folder (`weights.yaml`, section `behaviour`) so that generation, validation
and fine-tuning run the weights the way they were trained. A converted Hallo checkpoint records
Hallo's values; weights trained here record the project's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from foundation.config import opt


@dataclass
class ModelBehaviour:
    motion_in_plain_blocks: bool = opt(
        True, "run the motion modules of the blocks without cross-attention (the 8x8 level at SD-1.5 size); "
        "Hallo's released model skips them")
    sampling_beta_schedule: Literal["scaled_linear", "linear"] = opt(
        "scaled_linear", "beta schedule of the sampler (training always uses scaled_linear); Hallo samples with linear")
    reference_token_pairing: Literal["per_branch", "hallo_tiled"] = opt(
        "per_branch", "face tokens of the ReferenceNet pass under guidance: each branch its own (per_branch), or "
        "Hallo's tiling across the reference and motion frames (hallo_tiled)")
    reference_bank_dtype: Literal["float32", "float16"] = opt(
        "float32", "precision the reference features are rounded to before the denoiser reads them (Hallo: float16)")
    audio_pad_frames: int = opt(
        0, "zero-pad the waveform to a multiple of this many frames before wav2vec2 and clamp the audio windows "
        "over the padded sequence (Hallo: 16); 0 = no padding, windows clamped to the audio")
    uncond_face_region: Literal["drop", "keep"] = opt(
        "drop", "guidance's unconditional branch drops the face-locator features (drop, as Hallo) or keeps them")
    temporal: bool = opt(
        True, "the motion and audio modules are trained (stage-2 export, Hallo); false for a stage-1 export, "
        "which then generates without them")
