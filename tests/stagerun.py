"""Running the training entry points as a user does, reading their logs, and latent caches for them."""
import re
import subprocess
import sys
from pathlib import Path

from model.presets import get_preset
from training.config import CacheEncodeConfig
from training.latent_cache.encode import ClipEncoder, build_cache_shard

ROOT = Path(__file__).resolve().parents[1]
# Every step's loss and clip ids, logged at debug level on every rank (run_stage turns debug on).
LOSS_LINE = re.compile(r"(stage[12]) step (\d+) loss ([0-9.]+) rank (\d+) keys \[([^\]]*)\]")


def stage_overrides(shards: dict[str, list[str]], pretrained: Path, out: Path, **extra) -> list[str]:
    sets = {
        "data.shards": "[" + ",".join(shards["train"]) + "]",
        "data.validation_shards": "[" + ",".join(shards["validation"]) + "]",
        "model.pretrained_dir": str(pretrained),
        "run.output_dir": str(out),
        **extra,
    }
    return [arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]


def run_stage(stage: str, sets: list[str], launcher: list[str] | None = None, timeout: int = 600, configs: str = "demo"):
    """training/{stage}.py with configs/{configs}/{stage}.yaml, debug logging and the `--set` overrides."""
    cmd = [*(launcher or [sys.executable]), str(ROOT / "training" / f"{stage}.py"),
           "--config", str(ROOT / "configs" / configs / f"{stage}.yaml"), "--set", "run.log_level=debug", *sets]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def losses(output: str) -> dict[tuple[int, int], float]:
    """(rank, step) -> loss, from the training log lines."""
    return {(int(m[4]), int(m[2])): float(m[3]) for m in LOSS_LINE.finditer(output)}


def keys_by_rank(output: str) -> dict[int, set[str]]:
    seen: dict[int, set[str]] = {}
    for m in LOSS_LINE.finditer(output):
        seen.setdefault(int(m[4]), set()).update(k.strip(" '\"") for k in m[5].split(",") if k.strip())
    return seen


def build_cache(shards: list[str], vae_dir: Path, out: Path, resolution: int = get_preset("tiny").resolution) -> Path:
    """What `python -m training.latent_cache` writes for `shards`, built in this process without Ray."""
    encoder = ClipEncoder(CacheEncodeConfig(vae_dir=str(vae_dir), resolution=resolution, batch_frames=32))
    for shard in shards:
        build_cache_shard(shard, out, encoder, encoder.identity, resolution)
    return out
