"""The training loop both stages share: data, DeepSpeed steps, logging, checkpoints, resume."""
from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Optional

import torch

from foundation.config import ConfigError
from foundation.storage import publish_folder
from model.weights import INDEX_FILE
from foundation.cpu_threads import set_cpu_threads
from training import checkpoint
from training.arguments import parse_args
from training.config import TrainConfig
from training.data import ResumableBatches, ShardStream
from training.engine import build_engine, device_for, init_distributed
from training.hallo_stage import HalloStage
from training.preflight import preflight
from training.progress import Progress, duration
from training.samples import SyncFilter
from training.sync_metrics import log_sync_metrics, validation_scorer

log = logging.getLogger(__name__)


def _scalar_logger(out_dir: Path, rank: int):
    if rank != 0:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out_dir / "tensorboard"))


def train(stage_class: type[HalloStage], cfg: TrainConfig) -> list[float]:
    """Build the stage and run (or resume) its training to run.max_steps; returns this process's per-step losses."""
    rank, world, local_rank = init_distributed()
    device = device_for(cfg, local_rank)
    if device.type == "cpu":
        set_cpu_threads(cfg.run.cpu_threads)
    out_dir = Path(cfg.run.output_dir)
    ckpt_dir = out_dir / "checkpoints"
    torch.manual_seed(cfg.run.seed)  # identical initial weights on every rank
    stage = stage_class(cfg, device)
    engine = build_engine(stage.module, cfg, world)
    generator = torch.Generator(device="cpu").manual_seed(cfg.run.seed * 1000 + rank)

    state = checkpoint.load(engine, ckpt_dir) if cfg.run.resume == "latest" else None
    step = state["step"] if state else 0
    if state:
        checkpoint.restore_rng(state["per_rank"]["rng"], generator)
    stream = ShardStream(cfg.data.shards, SyncFilter(stage.decoder(), cfg.data), cfg.data, cfg.run.batch_size,
                         cfg.run.seed, rank, world)
    batches = ResumableBatches.from_state(stream, cfg.data.num_workers, state["per_rank"]["data"] if state else None)
    scalars = _scalar_logger(out_dir, rank)
    sync_scorer = validation_scorer(cfg) if scalars is not None and cfg.run.validate_every else None
    losses: list[float] = []
    progress = Progress(stage.name, cfg.run.max_steps, step, cfg.run.progress_every, cfg.run.progress_seconds,
                        enabled=rank == 0)
    if rank == 0:
        log.info("%s: %s from step %d to %d on %d process(es), %s; outputs in %s", stage.name,
                 "resuming" if state else "training", step, cfg.run.max_steps, world, device, out_dir)
    while step < cfg.run.max_steps:
        loss_sum, step_keys, step_samples = 0.0, [], 0
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
            step_samples += len(batch["key"]) * world
        step += 1
        loss_value = loss_sum / cfg.run.grad_accum
        losses.append(loss_value)
        log.debug("%s step %d loss %.6f rank %d keys %s", stage.name, step, loss_value, rank, step_keys)
        progress.step(step, loss_value, engine.get_lr()[0], step_samples)
        if scalars is not None and (step % cfg.run.log_every == 0 or step == cfg.run.max_steps):
            totals = batches.totals()
            grad_norm = engine.get_global_grad_norm()
            scalars.add_scalar("train/loss", loss_value, step)
            scalars.add_scalar("train/lr", engine.get_lr()[0], step)
            if grad_norm is not None and math.isfinite(float(grad_norm)):
                scalars.add_scalar("train/grad_norm", float(grad_norm), step)
            scalars.add_scalar("train/samples_per_s", progress.samples_per_second(), step)
            scalars.add_scalar("data/skipped_samples", totals.bad, step)
        if step % cfg.run.checkpoint_every == 0 or step == cfg.run.max_steps:
            per_rank = {"rng": checkpoint.rng_state(generator), "data": batches.state_dict()}
            checkpoint.save(engine, ckpt_dir, step, per_rank, {"stage": stage.name}, cfg.run.keep_last)
            checksum = sum(p.detach().double().sum().item() for p in engine.module.parameters() if p.requires_grad)
            log.debug("rank %d param-checksum %.10e at step %d", rank, checksum, step)
            if rank == 0:
                log.info("%s step %d: checkpoint saved in %s", stage.name, step, ckpt_dir / f"step-{step:07d}")
                stage.export(engine.module, out_dir / "export")
                log.info("%s step %d: export written to %s", stage.name, step, out_dir / "export")
                if cfg.run.export_url:
                    publish_folder(out_dir / "export", cfg.run.export_url, last=INDEX_FILE)
                    log.info("%s step %d: export published to %s", stage.name, step, cfg.run.export_url)
        if rank == 0 and cfg.run.validate_every and (step % cfg.run.validate_every == 0):
            folder = out_dir / "validation" / f"step-{step:07d}"
            frames = stage.validate(engine.module, folder, cfg.run.validation_steps)
            if frames is not None and scalars is not None:
                picks = frames[:: max(1, len(frames) // 4)][:4]
                scalars.add_images("validation/frames", picks, step, dataformats="NHWC")
            if sync_scorer is not None:
                log_sync_metrics(scalars, folder / "validation.mp4", sync_scorer, step)
            log.info("%s step %d: validation video %s", stage.name, step, folder / "validation.mp4")
    progress.close()
    if scalars is not None:
        scalars.close()
    if rank == 0:
        log.info("%s done: %d steps in %s (%.2f samples/s), final loss %s; export %s, checkpoints %s, "
                 "TensorBoard %s", stage.name, len(losses), duration(progress.elapsed()), progress.samples_per_second(),
                 f"{losses[-1]:.4f}" if losses else "-", out_dir / "export", ckpt_dir, out_dir / "tensorboard")
    return losses


def main(stage_class: type[HalloStage], argv: Optional[list[str]] = None) -> int:
    """`deepspeed training/stage1.py ...` and the like: the arguments, then run."""
    cfg = parse_args(stage_class.name, argv)
    return 0 if cfg is None else run(stage_class, cfg)


def run(stage_class: type[HalloStage], cfg: TrainConfig) -> int:
    """Check the config (exit status 2 and one line on a mistake), then train."""
    logging.basicConfig(level=cfg.run.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        cfg = preflight(stage_class.name, cfg)  # before DeepSpeed and the model build
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    train(stage_class, cfg)
    return 0


if __name__ == "__main__":
    sys.exit("run training/stage1.py or training/stage2.py")
