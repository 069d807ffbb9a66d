"""The training loop both stages share: data, DeepSpeed steps, logging, checkpoints, resume."""
from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path
from typing import Optional, Protocol

import numpy as np
import torch
from tqdm import tqdm

from foundation.config import ConfigError, describe_markdown, load_config
from foundation.storage import publish_folder
from model.weights import INDEX_FILE
from foundation.cpu_threads import set_cpu_threads
from training import checkpoint
from training.config import TrainConfig
from training.data import Decoder, ResumableBatches, ShardStream
from training.engine import build_engine, device_for, init_distributed
from training.preflight import preflight
from training.samples import SyncFilter
from training.sync_metrics import log_sync_metrics, validation_scorer

log = logging.getLogger(__name__)


class Stage(Protocol):
    """What differs between stage 1 and stage 2."""

    name: str

    def build(self, cfg: TrainConfig, device: torch.device) -> torch.nn.Module:
        """The module DeepSpeed wraps: forward(batch, generator) -> scalar loss; frozen parts have requires_grad=False."""

    def decoder(self, cfg: TrainConfig) -> Decoder:
        """Raw shard sample -> training sample (tensors)."""

    def export(self, module: torch.nn.Module, out_dir: Path) -> None:
        """Write the trainable modules in diffusers format (what generation and stage 2 load)."""

    def validate(self, module: torch.nn.Module, out_dir: Path, steps: int) -> Optional[np.ndarray]:
        """Generate a short video from a held-out sample into out_dir; return its frames (T, H, W, 3)."""


def parse_args(stage: Stage, argv: Optional[list[str]]) -> Optional[TrainConfig]:
    """The config from defaults < --config < --set (exit 2 on a bad one); None for --print-config."""
    parser = argparse.ArgumentParser(
        prog=f"deepspeed training/{stage.name}.py",
        description=f"Hallo {stage.name} training. Also runs as `python training/{stage.name}.py` (one process) "
        "or under torchrun. Resumes from the latest complete checkpoint in run.output_dir.",
    )
    parser.add_argument("--config", type=Path, help=f"YAML config, e.g. configs/{stage.name}.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set run.max_steps=10 (repeatable)")
    parser.add_argument("--print-config", action="store_true", help="print every config key with its default and exit")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.print_config:
        print(describe_markdown(TrainConfig))
        return None
    try:
        return load_config(TrainConfig, args.config, args.overrides)
    except ConfigError as err:
        parser.exit(2, f"error: {err}\n")


def _scalar_logger(out_dir: Path, rank: int):
    if rank != 0:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out_dir / "tensorboard"))


def train(stage: Stage, cfg: TrainConfig) -> list[float]:
    """Run (or resume) training to run.max_steps; returns this process's per-step losses."""
    rank, world, local_rank = init_distributed()
    device = device_for(cfg, local_rank)
    if device.type == "cpu":
        set_cpu_threads(cfg.run.cpu_threads)
    out_dir = Path(cfg.run.output_dir)
    ckpt_dir = out_dir / "checkpoints"
    torch.manual_seed(cfg.run.seed)  # identical initial weights on every rank
    module = stage.build(cfg, device)
    engine = build_engine(module, cfg, world)
    generator = torch.Generator(device="cpu").manual_seed(cfg.run.seed * 1000 + rank)

    state = checkpoint.load(engine, ckpt_dir) if cfg.run.resume == "latest" else None
    step = state["step"] if state else 0
    if state:
        checkpoint.restore_rng(state["per_rank"]["rng"], generator)
    stream = ShardStream(cfg.data.shards, SyncFilter(stage.decoder(cfg), cfg.data), cfg.data, cfg.run.batch_size,
                         cfg.run.seed, rank, world)
    batches = ResumableBatches.from_state(stream, cfg.data.num_workers, state["per_rank"]["data"] if state else None)
    scalars = _scalar_logger(out_dir, rank)
    sync_scorer = validation_scorer(cfg) if scalars is not None and cfg.run.validate_every else None
    losses: list[float] = []
    bar = tqdm(total=cfg.run.max_steps, initial=step, desc=stage.name, disable=rank != 0 or None)
    started, samples = time.perf_counter(), 0
    while step < cfg.run.max_steps:
        loss_sum, step_keys = 0.0, []
        for _ in range(cfg.run.grad_accum):
            batch = next(batches)
            loss = engine(batch, generator)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{stage.name}: loss is {loss.item()} at step {step + 1}; "
                                         f"batch keys {batch['key']}")
            engine.backward(loss)
            engine.step()
            loss_sum += loss.item()
            step_keys += batch["key"]
            samples += len(batch["key"]) * world
        step += 1
        loss_value = loss_sum / cfg.run.grad_accum
        losses.append(loss_value)
        log.info("%s step %d loss %.6f rank %d keys %s", stage.name, step, loss_value, rank, step_keys)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.4f}")
        if scalars is not None and (step % cfg.run.log_every == 0 or step == cfg.run.max_steps):
            totals = batches.totals()
            grad_norm = engine.get_global_grad_norm()
            scalars.add_scalar("train/loss", loss_value, step)
            scalars.add_scalar("train/lr", engine.get_lr()[0], step)
            if grad_norm is not None and math.isfinite(float(grad_norm)):
                scalars.add_scalar("train/grad_norm", float(grad_norm), step)
            scalars.add_scalar("train/samples_per_s", samples / max(1e-9, time.perf_counter() - started), step)
            scalars.add_scalar("data/skipped_samples", totals.bad, step)
        if step % cfg.run.checkpoint_every == 0 or step == cfg.run.max_steps:
            per_rank = {"rng": checkpoint.rng_state(generator), "data": batches.state_dict()}
            checkpoint.save(engine, ckpt_dir, step, per_rank, {"stage": stage.name}, cfg.run.keep_last)
            checksum = sum(p.detach().double().sum().item() for p in engine.module.parameters() if p.requires_grad)
            log.info("rank %d param-checksum %.10e at step %d", rank, checksum, step)
            if rank == 0:
                stage.export(engine.module, out_dir / "export")
                if cfg.run.export_url:
                    publish_folder(out_dir / "export", cfg.run.export_url, last=INDEX_FILE)
        if rank == 0 and cfg.run.validate_every and (step % cfg.run.validate_every == 0):
            folder = out_dir / "validation" / f"step-{step:07d}"
            frames = stage.validate(engine.module, folder, cfg.run.validation_steps)
            if frames is not None and scalars is not None:
                picks = frames[:: max(1, len(frames) // 4)][:4]
                scalars.add_images("validation/frames", picks, step, dataformats="NHWC")
            if sync_scorer is not None:
                log_sync_metrics(scalars, folder / "validation.mp4", sync_scorer, step)
            log.info("validation video: %s", folder / "validation.mp4")
    bar.close()
    if scalars is not None:
        scalars.close()
    return losses


def main(stage: Stage, argv: Optional[list[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = parse_args(stage, argv)
    if cfg is None:
        return 0
    try:
        cfg = preflight(stage.name, cfg)  # before DeepSpeed and the model build
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    train(stage, cfg)
    return 0


if __name__ == "__main__":
    sys.exit("run training/stage1.py or training/stage2.py")
