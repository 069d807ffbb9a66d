"""DeepSpeed set-up shared by both stages: process group, config, engine."""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import torch

from foundation.config import ConfigError
from foundation.project import project_file
from training.config import TrainConfig

log = logging.getLogger(__name__)

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def init_distributed() -> tuple[int, int, int]:
    """Join the launcher's process group (deepspeed/torchrun), or form a 1-process one for `python`.

    Without RANK/WORLD_SIZE DeepSpeed falls back to MPI discovery, so a plain `python` launch sets them.
    """
    import deepspeed

    if "RANK" not in os.environ:
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not torch.cuda.is_available() and os.environ["RANK"] == "0":  # else a silent pause of up to a minute
        log.info("starting DeepSpeed: on CPU it builds or loads its communication op first (~40 s when built; "
                 "cached in %s)", os.environ.get("TORCH_EXTENSIONS_DIR", "~/.cache/torch_extensions"))
    started = time.monotonic()
    deepspeed.init_distributed(dist_backend=backend)
    if os.environ["RANK"] == "0":
        log.info("process group ready (%s, %s processes) in %.0f s", backend, os.environ["WORLD_SIZE"],
                 time.monotonic() - started)
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    return rank, world, local


def device_for(cfg: TrainConfig, local_rank: int) -> torch.device:
    if cfg.run.device == "cpu" or (cfg.run.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def check_devices(cfg: TrainConfig) -> None:
    """ConfigError when the asked device or precision is not available to this process."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cfg.run.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config key 'run.device': cuda asked for, but torch sees no CUDA device")
    if device_for(cfg, local_rank).type == "cuda" and local_rank >= torch.cuda.device_count():
        raise ConfigError(f"LOCAL_RANK {local_rank} needs a GPU of its own; this node has {torch.cuda.device_count()}")
    if cfg.run.precision == "fp16" and device_for(cfg, local_rank).type == "cpu":
        raise ConfigError("config key 'run.precision': fp16 is not supported on CPU by DeepSpeed: use bf16 or fp32")


def deepspeed_json(cfg: TrainConfig) -> dict[str, Any]:
    """The settings of run.deepspeed_config ({} for ''); a relative path is tried in the working directory,
    then in the project's bundled files (a clone's or the installed copy, foundation/project.py). ConfigError when it is missing or not a JSON object."""
    name = cfg.run.deepspeed_config
    if not name:
        return {}
    path = next((p for p in (Path(name), project_file(name)) if p.is_file()), None)
    if path is None:
        raise ConfigError(f"config key 'run.deepspeed_config': no file {name}")
    try:
        ds = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"config key 'run.deepspeed_config': {path} is not valid JSON: {err}") from err
    if not isinstance(ds, dict):
        raise ConfigError(f"config key 'run.deepspeed_config': {path} must hold a JSON object")
    return ds


def deepspeed_config(cfg: TrainConfig, world_size: int) -> dict[str, Any]:
    """The JSON file's settings, with batch, precision, clipping and ZeRO stage from our config."""
    ds = deepspeed_json(cfg)
    ds.update(
        train_micro_batch_size_per_gpu=cfg.run.batch_size,
        gradient_accumulation_steps=cfg.run.grad_accum,
        train_batch_size=cfg.run.batch_size * cfg.run.grad_accum * world_size,
        gradient_clipping=cfg.optim.grad_clip,
        bf16={"enabled": cfg.run.precision == "bf16"},
        fp16={"enabled": cfg.run.precision == "fp16", "initial_scale_power": 16},
    )
    ds.setdefault("zero_optimization", {})["stage"] = cfg.run.zero_stage
    ds.setdefault("steps_per_print", 10**9)
    return ds


def build_engine(module: torch.nn.Module, cfg: TrainConfig, world_size: int) -> Any:
    """Wrap `module`; only its parameters with requires_grad enter the optimizer."""
    import deepspeed

    trainable = [p for p in module.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("no trainable parameters")
    optimizer = torch.optim.AdamW(trainable, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                                  weight_decay=cfg.optim.weight_decay, eps=cfg.optim.eps)
    warmup = max(1, cfg.optim.warmup_steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    engine, _, _, _ = deepspeed.initialize(model=module, optimizer=optimizer, lr_scheduler=schedule,
                                           config=deepspeed_config(cfg, world_size))
    log.info("engine: %d trainable tensors (%.1fM parameters), ZeRO-%d, %s", len(trainable),
             sum(p.numel() for p in trainable) / 1e6, cfg.run.zero_stage, cfg.run.precision)
    return engine
