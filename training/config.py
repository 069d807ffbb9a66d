"""Every training setting for both stages, with its default and meaning (one source for the README)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from foundation.config import opt, section


@dataclass
class DataConfig:
    shards: list[str] = opt([], "shard paths, globs or brace patterns (any URL webdataset opens)")
    validation_shards: list[str] = opt([], "held-out shards; validation animates their first sample (default: a training sample)", results=False)
    shuffle_shards: int = opt(1, "shards each reader reads interleaved and shuffles together (a window); resuming "
                                 "replays at most one window", low=1)
    shuffle_buffer: int = opt(100, "raw samples in each reader's seeded shuffle buffer (emptied at every window's end)", low=1)
    num_workers: int = opt(1, "DataLoader worker processes per rank", low=0)
    min_ref_gap: int = opt(30, "stage 1: reference and target frames at least this many frames apart (less if the clip is short)", low=1)
    max_bad_fraction: float = opt(0.2, "stop with an error once more than this share of samples failed to decode", low=0, high=1, results=False)
    bad_check_after: int = opt(50, "samples seen before max_bad_fraction is enforced", low=1, results=False)
    resolution: int = opt(0, "pixel size samples are resized to; 0 = the model preset's resolution", low=0)
    latents: Optional[str] = opt(None, "latent-cache folder (python -m training.cache_latents --out): train on its VAE "
                                       "latents instead of decoding and encoding the video; None = pixels", results=False)


@dataclass
class ModelConfig:
    preset: Literal["tiny", "sd15"] = opt("tiny", "model sizes (model/presets.py)")
    pretrained_dir: str = opt("pretrained", "folder from `python -m model.pretrained fetch|tiny` (unet/, vae/, motion_module/, ...)")
    init_from: Optional[str] = opt(None, "stage 2: stage 1's exported weights folder (export/ of its run)")
    gradient_checkpointing: bool = opt(True, "recompute activations in the backward pass (every block, motion modules included)", results=False)


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
    drop_reference: float = opt(0.05, "probability of training a sample without reference attention", low=0, high=1)
    drop_identity: float = opt(0.05, "probability of a zero face embedding", low=0, high=1)
    drop_audio: float = opt(0.05, "stage 2: probability of zero audio tokens", low=0, high=1)
    drop_motion: float = opt(0.05, "stage 2: probability of motion frames replaced by the reference image (as in the first generated clip)", low=0, high=1)


@dataclass
class RunConfig:
    output_dir: str = opt("runs/stage", "checkpoints, exported weights, TensorBoard logs and validation videos", results=False)
    max_steps: int = opt(30000, "optimizer steps", low=1, results=False)
    batch_size: int = opt(1, "samples per rank per step (micro-batch)", low=1)
    grad_accum: int = opt(1, "micro-batches per optimizer step", low=1)
    precision: Literal["fp32", "bf16", "fp16"] = opt("bf16", "training precision (fp16 is refused on CPU)")
    zero_stage: int = opt(2, "DeepSpeed ZeRO stage", low=0, high=3, results=False)
    deepspeed_config: str = opt("configs/deepspeed_zero2.json", "DeepSpeed JSON; batch, precision, clip and ZeRO stage are set from this config", results=False)
    seed: int = opt(42, "seed for model init, noise, dropout and data order")
    checkpoint_every: int = opt(500, "steps between checkpoints (and exports)", low=1, results=False)
    keep_last: int = opt(3, "checkpoints kept; older ones are deleted", low=1, results=False)
    validate_every: int = opt(500, "steps between validation videos; 0 disables", low=0, results=False)
    validation_steps: int = opt(20, "denoising steps of the validation generation", low=1, results=False)
    log_every: int = opt(10, "steps between TensorBoard scalars", low=1, results=False)
    resume: Literal["latest", "none"] = opt("latest", "resume from the latest complete checkpoint in output_dir", results=False)
    device: Literal["auto", "cpu", "cuda"] = opt("auto", "cuda when available, else cpu", results=False)


@dataclass
class TrainConfig:
    data: DataConfig = section(DataConfig, "shards and sampling")
    model: ModelConfig = section(ModelConfig, "model and pretrained weights")
    optim: OptimConfig = section(OptimConfig, "optimizer")
    diffusion: DiffusionConfig = section(DiffusionConfig, "noise, loss weighting and condition dropout")
    run: RunConfig = section(RunConfig, "steps, precision, checkpoints, logging")


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
