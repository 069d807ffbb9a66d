"""`hallo-cache-latents` (`python -m training.latent_cache`): the VAE latents of every frame, once.

Writes, for every curated shard, a cache shard of the same name into --out (same samples, same
order; format in training/latent_cache/format.py), `parts/NAME.json` per finished shard, `cache.json` (the
VAE's weights hash, resolution, precision) and `summary.json` (totals, disk per hour of video).
Training uses it with `--set data.latents=DIR`. Re-running the same command resumes: finished
shards are skipped; a --out made with another VAE, resolution or precision is refused.

    python -m training.latent_cache --shards 'curated/shards/*.tar' --out curated/latents-sd15 \\
        --set encode.vae_dir=pretrained/vae [--address auto]
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from foundation.config import ConfigError, describe_markdown, load_config
from training.config import LatentCacheConfig

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.latent_cache",
        description="Encode every frame of curated shards with the frozen VAE once, into latent-cache shards that "
        "training reads with --set data.latents=OUT (no video decode, no VAE in the step). One Ray task per shard, "
        "on GPUs when the cluster has any. Re-running the same command resumes.",
    )
    parser.add_argument("--shards", nargs="+", metavar="PATTERN",
                        help="curated shards: paths, globs, brace patterns or URLs (as data.shards)")
    parser.add_argument("--out", type=Path, help="cache folder, e.g. curated/latents-sd15")
    parser.add_argument("--config", type=Path, help="YAML file with config overrides")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set encode.resolution=64 (repeatable)")
    parser.add_argument("--address", help="Ray cluster address to join (default: start a local Ray)")
    parser.add_argument("--num-cpus", type=int, help="CPUs for the local Ray (default: all)")
    parser.add_argument("--print-config", action="store_true", help="print every config key with its default and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.print_config:
        print(describe_markdown(LatentCacheConfig))
        return 0
    if not args.shards or args.out is None:
        parser.exit(2, "error: --shards and --out are required\n")
    from training.data import expand_shards
    from training.latent_cache.format import vae_identity

    try:
        cfg = load_config(LatentCacheConfig, args.config, args.overrides)
        if cfg.encode.resolution % 8:
            raise ConfigError(f"config key 'encode.resolution' must be a multiple of 8, got {cfg.encode.resolution}")
        shards = expand_shards(args.shards)
        missing = [s for s in shards if "://" not in s and not Path(s).is_file()]
        if not shards or missing:
            raise ConfigError(f"--shards: {missing[0] if missing else ' '.join(args.shards)} matches no shard file")
        names = [s.rsplit("/", 1)[-1] for s in shards]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"--shards: {len(twice)} file names occur twice (e.g. {twice[0]}); cache shards are "
                              "named after them: cache each folder into its own --out")
        if not (Path(cfg.encode.vae_dir) / "config.json").is_file():
            raise ConfigError(f"encode.vae_dir: {cfg.encode.vae_dir} is not a diffusers VAE folder (no config.json)")
        from orchestration.latent_cache_job import cache_identity, claim_folder, run_cache

        claim_folder(args.out, cache_identity(cfg, vae_identity(cfg.encode.vae_dir)))
    except ConfigError as err:  # CacheConflict (--out made otherwise) too
        parser.exit(2, f"error: {err}\n")
    from orchestration.ray_setup import init_ray

    init_ray(args.address, args.num_cpus)
    summary = run_cache(shards, args.out, cfg)
    print(json.dumps(summary, indent=2, sort_keys=True))
    if summary["failed"]:
        log.error("%d shards failed (see above); re-run the same command to retry them", len(summary["failed"]))
        return 1
    log.info("cache: %s; train with --set data.latents=%s", args.out, args.out)
    return 0

