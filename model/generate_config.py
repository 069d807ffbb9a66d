"""Every setting of `python -m model.generate`, with its default, help and range (one place: the CLI,
configs/generate.yaml, the README table and the input checks of model/preflight.py all read it).

`null` (None) is the one way to say "what the weights folder or the sampling preset says"; `cfg` in this code
always names a config object, never the guidance scale."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from foundation.config import opt


@dataclass
class GenerateConfig:
    weights: str = opt("", "weights folder (weights.yaml + the five modules) or its hub id")
    image: str = opt("", "reference portrait; the face is found and cropped like the training clips")
    audio: str = opt("", "driving speech, any format PyAV reads; the video lasts as long as it")
    out: str = opt("out.mp4", "output mp4: 25 fps H.264 with the driving audio as AAC")
    pose_weight: float = opt(1.0, "weight of the audio branch on the background/pose region", low=0)
    face_weight: float = opt(1.0, "weight of the audio branch on the face (without the lips)", low=0)
    lip_weight: float = opt(1.0, "weight of the audio branch on the lips", low=0)
    guidance_scale: float = opt(3.5, "classifier-free guidance scale (1 = no guidance, half the compute)", low=0,
                                was="cfg")
    preset: Literal["auto", "hallo", "balanced", "fast"] = opt(
        "auto", "sampling preset (sampler, steps, guided steps; docs/generation.md, Presets): hallo = Hallo's 40 DDIM "
        "steps guided on every step, balanced, fast; auto = the weights folder's (hallo for converted Hallo weights, "
        "balanced otherwise)")
    sampler: Literal["auto", "ddim", "dpmpp", "unipc"] = opt(
        "auto", "sampler: ddim, dpmpp (DPM-Solver++ multistep), unipc; auto = the preset's")
    steps: Optional[int] = opt(None, "sampling steps per clip", low=1, high=1000, null="the preset's")
    guidance_min_timestep: Optional[int] = opt(
        None, "guide only the sampling steps at or above this timestep (of 1000); 0 = every step (Hallo's sampler)",
        low=0, high=1000, null="the preset's (hallo: 0; the others: the weights folder's, 600, or 0 for converted Hallo "
        "weights)", was="cfg_min_timestep")
    batched_guidance: bool = opt(True, "run guidance's two branches as one batch of two (faster on a GPU; "
                                 "falls back to two passes by itself after a CUDA out-of-memory error)")
    compile: bool = opt(False, "torch.compile the denoising UNet (minutes of compiling first; pays on long videos)")
    seed: int = opt(42, "seed of the initial noise: the same seed gives the same video", low=0)
    device: str = opt("auto", "torch device: auto (cuda when available), cpu, cuda, cuda:1, ...")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = opt("auto", "auto = float16 on cuda, float32 on cpu")
    cpu_threads: int = opt(0, "torch threads on CPU; 0 = auto: this process's CPUs, at most torch's default "
                           "(OMP_NUM_THREADS wins; foundation/cpu_threads.py)", low=0)
    clip_frames: Optional[int] = opt(None, "frames per clip", low=1, null="the weights folder's value")
    motion_frames: Optional[int] = opt(None, "previous frames carried into each clip", low=0,
                                       null="the weights folder's value")
    audio_encoder: str = opt("", "audio encoder folder or hub id to use instead of the one weights.yaml names; '' = "
                                 "that one. An encoder other than the recorded one (weights.yaml audio_encoder) is "
                                 "refused: the model was trained on its features")
    allow_other_audio_encoder: bool = opt(False, "use an audio encoder other than the recorded one anyway (it must have "
                                                 "the recorded layers and width)")
    allow_no_face: bool = opt(False, "animate a centre crop when the image shows no face (without it: exit 2)")
    progress: bool = opt(True, "show a progress bar per clip")
