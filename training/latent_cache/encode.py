"""Build one latent-cache shard from one curated shard: the work of one `training.latent_cache` task.

Free of Ray (orchestration/latent_cache_job.py schedules it). The cache shard is written under a
temporary name and renamed when complete, then its report `parts/NAME.json` is written the same
way: the report's presence means the shard is done, so a re-run skips it.
"""
from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import webdataset as wds

from foundation import schema
from training.config import CacheEncodeConfig
from training.data import shard_samples
from training.frames import frame_batches, to_unit_range
from training.latent_cache.format import FORMAT, KEY_INFO, KEY_MEAN, KEY_STD, vae_identity

log = logging.getLogger(__name__)

PARTS = "parts"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
ClipLatents = Callable[[bytes], tuple[np.ndarray, np.ndarray]]


@dataclass
class ShardReport:
    shard: str  # the curated shard's URL or path
    name: str  # the cache shard's file name
    samples: int
    errors: int  # samples stored with an error instead of latents (training skips them)
    frames: int
    video_s: float  # seconds of video cached
    bytes: int  # size of the cache shard
    seconds: float  # time the task took


class ClipEncoder:
    """Every frame of a clip -> the mean and std of its VAE latent distribution, float16 (n, 4, R/8, R/8)."""

    def __init__(self, cfg: CacheEncodeConfig) -> None:
        from model.weights import load_vae

        use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        self.device = torch.device("cuda" if use_cuda else "cpu")
        self.dtype = DTYPES[cfg.precision]
        self.vae = load_vae(cfg.vae_dir, self.dtype).to(self.device).eval().requires_grad_(False)
        self.identity = vae_identity(cfg.vae_dir)
        self.resolution = cfg.resolution
        self.batch = cfg.batch_frames

    @torch.no_grad()
    def __call__(self, mp4: bytes) -> tuple[np.ndarray, np.ndarray]:
        means, stds = [], []
        for chunk in frame_batches(mp4, self.resolution, self.batch):
            dist = self.vae.encode(to_unit_range(chunk.to(self.device), self.dtype)).latent_dist
            means.append(dist.mean.to("cpu", torch.float16))
            stds.append(dist.std.to("cpu", torch.float16))
        if not means:
            raise ValueError("the video has no frames")
        return torch.cat(means).numpy(), torch.cat(stds).numpy()


def cache_entries(raw: dict[str, Any], encode: ClipLatents, identity: str, resolution: int) -> dict[str, bytes]:
    """The cache entries of one curated sample; a clip that cannot be encoded gets an error entry
    instead, so the cache keeps the shard's samples and order."""
    info: dict[str, Any] = {"format": FORMAT, "vae": identity, "resolution": resolution}
    try:
        meta = schema.check_sample(raw, require_annotations=False)
        mean, std = encode(raw[schema.KEY_VIDEO])
        if len(mean) != meta.num_frames:
            raise ValueError(f"the video decodes to {len(mean)} frames, its metadata says {meta.num_frames}")
    except (ValueError, KeyError, TypeError, OSError) as err:  # av errors are OSError/ValueError subclasses
        log.warning("sample %s (%s): %s", raw.get("__key__"), raw.get("__url__"), err)
        return {KEY_INFO: json.dumps({**info, "error": str(err)}).encode()}
    info.update(frames=int(meta.num_frames), fps=meta.fps, audio_encoder=meta.audio_encoder)
    return {KEY_INFO: json.dumps(info).encode(), KEY_MEAN: schema.encode_npy(mean), KEY_STD: schema.encode_npy(std)}


def _commit(tmp: Path, final: Path) -> None:
    """fsync then rename: `final` is complete or absent."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)


def part_path(out_dir: Path, name: str) -> Path:
    return out_dir / PARTS / f"{name}.json"


def build_cache_shard(shard: str, out_dir: Path, encode: ClipLatents, identity: str, resolution: int) -> ShardReport:
    """Write `out_dir/NAME.tar` (NAME: the shard's file name) and then its report `parts/NAME.json`."""
    started = time.perf_counter()
    name = shard.rsplit("/", 1)[-1]
    (out_dir / PARTS).mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{name}.{uuid.uuid4().hex}.tmp"
    samples = errors = frames = 0
    video_s = 0.0
    try:
        with wds.TarWriter(str(tmp)) as writer:
            for raw in shard_samples(shard, strict=True):  # a read error fails the task: re-run retries
                entries = cache_entries(raw, encode, identity, resolution)
                info = json.loads(entries[KEY_INFO])
                samples += 1
                errors += "error" in info
                frames += info.get("frames", 0)
                video_s += info.get("frames", 0) / info.get("fps", 1)
                writer.write({"__key__": raw["__key__"], **entries})
        _commit(tmp, out_dir / name)
    finally:
        tmp.unlink(missing_ok=True)
    report = ShardReport(shard, name, samples, errors, frames, round(video_s, 3), (out_dir / name).stat().st_size,
                         round(time.perf_counter() - started, 3))
    part = part_path(out_dir, name)
    tmp_part = part.with_name(f".{part.name}.{uuid.uuid4().hex}.tmp")
    tmp_part.write_text(json.dumps(asdict(report), indent=1))
    _commit(tmp_part, part)
    return report


def read_report(out_dir: Path, name: str) -> ShardReport | None:
    part = part_path(out_dir, name)
    return ShardReport(**json.loads(part.read_text())) if part.is_file() else None
