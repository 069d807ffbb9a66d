"""Every training setting for both stages, with its default and meaning (one source for the README)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from foundation.config import ConfigError, opt, section


@dataclass
class DataConfig:
    shards: list[str] = opt([], "shard paths, globs or brace patterns (any URL webdataset opens)")
    validation_shards: list[str] = opt([], "held-out shards; validation animates their first sample (default: a training sample)")
    shuffle_buffer: int = opt(100, "raw samples in the seeded shuffle buffer of each reader")
    num_workers: int = opt(1, "DataLoader worker processes per rank")
    min_ref_gap: int = opt(30, "stage 1: reference and target frames at least this many frames apart (less if the clip is short)")
    max_bad_fraction: float = opt(0.2, "stop with an error once more than this share of samples failed to decode")
    bad_check_after: int = opt(50, "samples seen before max_bad_fraction is enforced")
    resolution: int = opt(0, "pixel size samples are resized to; 0 = the model preset's resolution")


@dataclass
class ModelConfig:
    preset: Literal["tiny", "sd15"] = opt("tiny", "model sizes (model/presets.py)")
    pretrained_dir: str = opt("pretrained", "folder from `python -m model.pretrained fetch|tiny` (unet/, vae/, motion_module/, ...)")
    init_from: Optional[str] = opt(None, "stage 2: stage 1's exported weights folder (export/ of its run)")
    gradient_checkpointing: bool = opt(True, "recompute activations in the backward pass (every block, motion modules included)")


@dataclass
class OptimConfig:
    lr: float = opt(1e-5, "AdamW learning rate (constant after warm-up)")
    warmup_steps: int = opt(0, "linear warm-up steps")
    betas: list[float] = opt([0.9, 0.999], "AdamW betas")
    weight_decay: float = opt(0.01, "AdamW weight decay")
    eps: float = opt(1e-8, "AdamW epsilon")
    grad_clip: float = opt(1.0, "gradient norm clip")


@dataclass
class DiffusionConfig:
    noise_offset: float = opt(0.05, "std of per-channel offset noise added to the Gaussian noise")
    snr_gamma: float = opt(5.0, "min-SNR weighting gamma, applied per sample; 0 disables")
    drop_unconditional: float = opt(0.05, "probability of training a batch with every condition missing that "
                                    "guidance's unconditional branch drops (trains that branch as generation runs it)")
    drop_reference: float = opt(0.05, "probability of training a sample without reference attention")
    drop_identity: float = opt(0.05, "probability of a zero face embedding")
    drop_face_region: float = opt(0.05, "probability of no face-locator features; with this or drop_unconditional "
                                  "above 0 guidance drops them too (behaviour.uncond_face_region=drop), else keeps them")
    drop_audio: float = opt(0.05, "stage 2: probability of zero audio tokens")
    drop_motion: float = opt(0.05, "stage 2: probability of motion frames replaced by the reference image (as in the first generated clip)")


@dataclass
class RunConfig:
    output_dir: str = opt("runs/stage", "checkpoints, exported weights, TensorBoard logs and validation videos")
    max_steps: int = opt(30000, "optimizer steps")
    batch_size: int = opt(1, "samples per rank per step (micro-batch)")
    grad_accum: int = opt(1, "micro-batches per optimizer step")
    precision: Literal["fp32", "bf16", "fp16"] = opt("bf16", "training precision (fp16 is refused on CPU)")
    zero_stage: int = opt(2, "DeepSpeed ZeRO stage")
    deepspeed_config: str = opt("configs/deepspeed_zero2.json", "DeepSpeed JSON; batch, precision, clip and ZeRO stage are set from this config")
    seed: int = opt(42, "seed for model init, noise, dropout and data order")
    checkpoint_every: int = opt(500, "steps between checkpoints (and exports)")
    keep_last: int = opt(3, "checkpoints kept; older ones are deleted")
    validate_every: int = opt(500, "steps between validation videos; 0 disables")
    validation_steps: int = opt(20, "denoising steps of the validation generation")
    log_every: int = opt(10, "steps between TensorBoard scalars")
    resume: Literal["latest", "none"] = opt("latest", "resume from the latest complete checkpoint in output_dir")
    device: Literal["auto", "cpu", "cuda"] = opt("auto", "cuda when available, else cpu")
    cpu_threads: int = opt(0, "torch threads per process on CPU; 0 = auto: the process's share of the CPUs it may use, "
                           "at most torch's default (OMP_NUM_THREADS wins); 1 is fastest for the tiny model on a busy machine")


@dataclass
class TrainConfig:
    data: DataConfig = section(DataConfig, "shards and sampling")
    model: ModelConfig = section(ModelConfig, "model and pretrained weights")
    optim: OptimConfig = section(OptimConfig, "optimizer")
    diffusion: DiffusionConfig = section(DiffusionConfig, "noise, loss weighting and condition dropout")
    run: RunConfig = section(RunConfig, "steps, precision, checkpoints, logging")

    def validate(self) -> None:
        if self.run.batch_size < 1 or self.run.grad_accum < 1:
            raise ConfigError("config keys 'run.batch_size'/'run.grad_accum' must be >= 1")
        if not 0 <= self.data.max_bad_fraction <= 1:
            raise ConfigError("config key 'data.max_bad_fraction' must be in [0, 1]")
        if self.run.zero_stage not in (0, 1, 2, 3):
            raise ConfigError("config key 'run.zero_stage' must be 0, 1, 2 or 3")
        if self.run.cpu_threads < 0:
            raise ConfigError("config key 'run.cpu_threads' must be >= 0 (0 = auto)")
        if self.run.checkpoint_every < 1:
            raise ConfigError("config key 'run.checkpoint_every' must be >= 1")
