"""Every training setting for both stages, with its default and meaning (one source for the README)."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

from foundation import hub
from foundation.config import ConfigError, opt, section
from model.weights_behaviour import ModelBehaviour, with_overrides


@dataclass
class DataConfig:
    shards: list[str] = opt([], "shard paths, globs or brace patterns, local or object URLs (s3://bucket/curated/shards/*.tar)")
    validation_shards: list[str] = opt([], "held-out shards; validation animates their first sample (default: a training sample)", results=False)
    shuffle_shards: int = opt(1, "shards each reader reads interleaved and shuffles together (a window); resuming "
                                 "replays at most one window", low=1)
    shuffle_buffer: int = opt(100, "raw samples in each reader's seeded shuffle buffer (emptied at every window's end)", low=1)
    num_workers: int = opt(1, "DataLoader worker processes per rank", low=0)
    min_ref_gap: int = opt(30, "stage 1: reference and target frames at least this many frames apart (less if the clip is short)", low=1)
    max_bad_fraction: float = opt(0.2, "stop with an error once more than this share of samples failed to decode", low=0, high=1, results=False)
    bad_check_after: int = opt(50, "samples seen before max_bad_fraction is enforced", low=1, results=False)
    resolution: Optional[int] = opt(None, "pixel size samples are resized to (a multiple of 8)", low=8,
                                    null="the model preset's resolution")
    unverified_sync: Literal["include", "exclude"] = opt(
        "include", "clips whose lip sync curation could not verify (judged without SyncNet weights, "
                   "ClipMeta.sync_verified false): include or exclude them; their count is logged either way")
    language_weights: dict[str, float] = opt(
        {}, "relative weight of each spoken language (ClipMeta.language, e.g. {zh: 0.3, en: 1}): a clip is used with "
            "probability its language's weight / the largest weight, so mostly-Mandarin data can keep English in the "
            "mix; languages not listed (and clips without one) weigh 1; {} = every clip as it comes")
    latents: Optional[str] = opt(None, "latent-cache folder (python -m training.latent_cache --out): train on its VAE "
                                       "latents instead of decoding and encoding the video; None = pixels", results=False)


@dataclass
class ModelConfig:
    preset: Literal["tiny", "sd15"] = opt("tiny", "model sizes (model/presets.py)")
    pretrained_dir: str = opt("pretrained", "folder from `hallo-weights fetch` or `hallo-standins` (unet/, vae/, motion_module/, "
                                            "...), or a hub id holding that layout; an object URL is mirrored to the local cache first")
    init_from: Optional[str] = opt(None, "weights folder to start from: stage 1's export/ (stage 2 needs one), a converted "
                                   "Hallo checkpoint, any export (a local folder, a run.export_url or a hub id); stage 1 "
                                   "without it starts from the bases")
    audio_encoder: Optional[str] = opt(
        None, "audio encoder folder or hub id the model is built for (any wav2vec2-family encoder; its width and layer "
              "count size the audio projection, and the export records it for generation); training refuses shards "
              "whose features another encoder made. null = model.init_from's recorded encoder, else BASE/wav2vec2 "
              "(pretrained_dir)")
    behaviour: dict[str, Any] = opt({}, "ModelBehaviour fields to change for this run and its exports, e.g. "
                                    "{motion_in_plain_blocks: true}; the others come from init_from's weights.yaml "
                                    "(else the defaults), but separate_vocals from how the shards were curated "
                                    "(docs/generation.md). See model/weights_behaviour.py")
    gradient_checkpointing: bool = opt(True, "recompute activations in the backward pass (every block, motion modules included)", results=False)

    def pretrained_folder(self) -> Path:
        """pretrained_dir as a local folder: itself, an object URL's mirror or a hub id's cached snapshot."""
        return _base_folder(self.pretrained_dir)


@functools.lru_cache(maxsize=None)
def _base_folder(ref: str) -> Path:
    """Once per process: an object URL costs a bucket listing, a hub id a request to the hub."""
    return hub.resolve(ref, "model.pretrained_dir")


@dataclass
class OptimConfig:
    lr: float = opt(1e-5, "AdamW learning rate (constant after warm-up)", low=0, results=False)
    warmup_steps: int = opt(0, "linear warm-up steps", low=0, results=False)
    betas: list[float] = opt([0.9, 0.999], "AdamW betas", low=0, high=1, results=False)
    weight_decay: float = opt(0.01, "AdamW weight decay", low=0, results=False)
    eps: float = opt(1e-8, "AdamW epsilon", low=0, results=False)
    grad_clip: float = opt(1.0, "gradient norm clip", low=0, results=False)


@dataclass
class DiffusionConfig:
    noise_offset: float = opt(0.05, "std of per-channel offset noise added to the Gaussian noise", low=0)
    snr_gamma: float = opt(5.0, "min-SNR weighting gamma, applied per sample; 0 disables", low=0)
    drop_unconditional: float = opt(0.05, "probability of training a batch with every condition missing that "
                                    "guidance's unconditional branch drops (trains that branch as generation runs it)",
                                    low=0, high=1)
    drop_reference: float = opt(0.05, "probability of training a sample without reference attention", low=0, high=1)
    drop_identity: float = opt(0.05, "probability of a zero face embedding", low=0, high=1)
    drop_face_region: float = opt(0.05, "probability of no face-locator features; with this or drop_unconditional "
                                  "above 0 guidance drops them too (behaviour.uncond_face_region=drop), else keeps them",
                                  low=0, high=1)
    drop_audio: float = opt(0.05, "stage 2: probability of zero audio tokens", low=0, high=1)
    drop_motion: float = opt(0.05, "stage 2: probability of motion frames replaced by the reference image (as in the first generated clip)", low=0, high=1)
    motion_noise_timesteps: int = opt(0, "stage 2, Hallo2's long-video augmentation: noise the motion frames' latents with "
                                      "the training schedule at a timestep drawn per sample in [0, this) (Hallo2: 50); 0 = off",
                                      low=0, high=1000)
    motion_patch_drop: float = opt(0.0, "stage 2, Hallo2's long-video augmentation: share of the motion frames' latent pixels "
                                   "(8x8-pixel patches) outside the face region zeroed, drawn per sample and frame "
                                   "(Hallo2: 0.25); 0 = off", low=0, high=1)


@dataclass
class RunConfig:
    output_dir: str = opt("runs/stage", "local folder: checkpoints, exported weights, TensorBoard logs and validation videos", results=False)
    export_url: Optional[str] = opt(None, "also publish every export to this folder or object URL (s3://bucket/runs/stage1/export); "
                                          "null = only output_dir/export", results=False)
    max_steps: int = opt(30000, "optimizer steps", low=1, results=False)
    batch_size: int = opt(1, "samples per rank per step (micro-batch)", low=1)
    grad_accum: int = opt(1, "micro-batches per optimizer step", low=1)
    precision: Literal["fp32", "bf16", "fp16"] = opt("bf16", "training precision (fp16 is refused on CPU)")
    zero_stage: int = opt(2, "DeepSpeed ZeRO stage", low=0, high=3, results=False)
    deepspeed_config: str = opt("configs/deepspeed_zero2.json", "DeepSpeed JSON (relative: to the working directory, else "
                                "the project); batch, precision, clip and ZeRO stage are set from this config; '' = none", results=False)
    seed: int = opt(42, "seed for model init, noise, dropout and data order")
    checkpoint_every: int = opt(500, "steps between checkpoints (and exports)", low=1, results=False)
    keep_last: int = opt(3, "checkpoints kept; older ones are deleted", low=1, results=False)
    validate_every: int = opt(500, "steps between validation videos; 0 disables", low=0, results=False)
    validation_steps: int = opt(20, "denoising steps of the validation generation", low=1, results=False)
    log_every: int = opt(10, "steps between TensorBoard scalars", low=1, results=False)
    progress_every: int = opt(50, "without a terminal: steps between progress lines (step, loss, lr, samples/s, ETA) "
                                  "in rank 0's log", low=1, results=False)
    progress_seconds: float = opt(60.0, "without a terminal: also a progress line when this many seconds passed since "
                                        "the last", low=1, results=False)
    log_level: Literal["debug", "info", "warning"] = opt("info", "log level; debug adds every step's loss and clip ids "
                                                          "on every rank", results=False)
    resume: Literal["latest", "none"] = opt("latest", "resume from the latest complete checkpoint in output_dir (refused if "
                                            "its run had a config that changes results); none = start at step 0", results=False)
    overwrite: bool = opt(False, "with resume=none: delete an earlier run's checkpoints, export, validation videos and "
                                 "TensorBoard logs in output_dir (without it, a used output_dir is refused)", results=False)
    device: Literal["auto", "cpu", "cuda"] = opt("auto", "cuda when available, else cpu", results=False)
    cpu_threads: int = opt(0, "torch threads per process on CPU; 0 = auto: the process's share of the CPUs it may use, "
                           "at most torch's default (OMP_NUM_THREADS wins); 1 is fastest for the tiny model on a busy machine",
                           low=0, results=False)


@dataclass
class TrainConfig:
    data: DataConfig = section(DataConfig, "shards and sampling")
    model: ModelConfig = section(ModelConfig, "model and pretrained weights")
    optim: OptimConfig = section(OptimConfig, "optimizer")
    diffusion: DiffusionConfig = section(DiffusionConfig, "noise, loss weighting and condition dropout")
    run: RunConfig = section(RunConfig, "steps, precision, checkpoints, logging")

    def validate(self) -> None:
        with_overrides(ModelBehaviour(), self.model.behaviour)  # names a bad key or value now, not after the model loads
        weights = self.data.language_weights
        if any(isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0 for w in weights.values()):
            raise ConfigError(f"config key 'data.language_weights' takes weights >= 0, got {weights}")
        if self.data.resolution is not None and self.data.resolution % 8:  # the VAE's latents are 1/8 the size
            raise ConfigError(f"config key 'data.resolution' must be a multiple of 8, got {self.data.resolution}")


@dataclass
class CacheEncodeConfig:
    vae_dir: str = opt("pretrained/vae", "VAE folder (diffusers AutoencoderKL, model.pretrained_dir's vae/); training refuses a cache built with other weights")
    resolution: int = opt(512, "frame size the latents are computed at: the training resolution (sd15: 512, tiny: 64)", low=8)
    batch_frames: int = opt(16, "frames per VAE encoder call", low=1, results=False)
    precision: Literal["fp32", "bf16", "fp16"] = opt("fp32", "VAE precision while encoding (the cache stores float16 either way)")
    device: Literal["auto", "cpu", "cuda"] = opt("auto", "cuda when the task has a GPU, else cpu", results=False)


@dataclass
class CacheRunConfig:
    gpus_per_task: Optional[float] = opt(None, "GPUs Ray reserves per shard task; None = 1 when the cluster has GPUs, else 0", low=0, results=False)
    cpus_per_task: float = opt(1.0, "CPUs Ray reserves per shard task", low=0, results=False)
    max_in_flight: int = opt(0, "shard tasks submitted at once; 0 = 2 x the tasks the cluster fits", low=0, results=False)
    max_retries: int = opt(2, "Ray retries of a shard task whose worker crashed", low=0, results=False)


@dataclass
class LatentCacheConfig:
    encode: CacheEncodeConfig = section(CacheEncodeConfig, "VAE, resolution and precision of the cached latents")
    run: CacheRunConfig = section(CacheRunConfig, "Ray resources of the shard tasks")
