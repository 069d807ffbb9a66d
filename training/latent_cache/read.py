"""Training on the latent cache (format in training/latent_cache/format.py): a sample's latents read from
its cache shard, the target latents drawn as the VAE draws them, and the checks before a run."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch
from diffusers.utils.torch_utils import randn_tensor

from foundation import schema
from foundation.audio_encoder import describe, same_encoder
from foundation.config import ConfigError
from training.config import TrainConfig
from training.data import BadSample, CacheMismatch, cache_shard, expand_shards, shard_samples
from training.latent_cache.format import KEY_INFO, KEY_MEAN, KEY_STD, check_info, vae_identity


class LatentFrames:
    """The frames a training sample needs, as cached latents (a stand-in for decoding and encoding them)."""

    def __init__(self, resolution: int, vae: str) -> None:
        self.resolution = resolution
        self.vae = vae

    def __call__(self, raw: dict[str, Any], meta: schema.ClipMeta, reference: int, motion: list[int],
                 targets: list[int]) -> dict[str, torch.Tensor]:
        info = json.loads(raw[KEY_INFO])
        check_info(info, self.vae, self.resolution, f"of {raw.get('__url__', '?')}")
        if "error" in info:
            raise BadSample(f"latent cache: {info['error']}")
        if info["frames"] != meta.num_frames:
            raise BadSample(f"latent cache has {info['frames']} frames, the clip {meta.num_frames}")
        cached = info.get("audio_encoder")
        if cached and meta.audio_encoder and not same_encoder(cached, meta.audio_encoder):
            raise CacheMismatch(f"latent cache {raw.get('__url__', '?')} was built from {meta.clip_id} as curated with "
                                f"{describe(cached)}, the shard now holds {describe(meta.audio_encoder)}'s features: "
                                "rebuild it with python -m training.latent_cache")
        means = torch.from_numpy(schema.npy_view(raw[KEY_MEAN])[[reference, *motion, *targets]])
        out = {"reference_latents": means[0], "target_mean": means[1 + len(motion):],
               "target_std": torch.from_numpy(schema.npy_view(raw[KEY_STD])[targets])}
        if motion:
            out["motion_latents"] = means[1:1 + len(motion)]
        return out


def sample_latents(mean: torch.Tensor, std: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """mean + std * noise with the noise drawn as AutoencoderKL's latent_dist.sample draws it (the same
    shape, device, dtype and generator give the same numbers); the mean alone without a generator."""
    if generator is None:
        return mean
    return mean + std * randn_tensor(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)


def cached_vae(cfg: TrainConfig) -> Optional[str]:
    """The identity of the VAE a TrainConfig's cache must have been built with; None without data.latents."""
    if not cfg.data.latents:
        return None
    from model.pretrained import base_paths

    vae = base_paths(cfg.model.pretrained_folder())["vae"]
    if not (vae / "config.json").is_file():
        raise ConfigError(f"model.pretrained_dir: {vae} is not a VAE folder, and data.latents needs it to check the cache")
    return vae_identity(str(vae))


def training_resolution(cfg: TrainConfig) -> int:
    from model.presets import get_preset

    return cfg.data.resolution if cfg.data.resolution is not None else get_preset(cfg.model.preset).resolution


def check_cache(cfg: TrainConfig) -> None:
    """Before training: every shard has its cache shard (local folders), built with this run's VAE at
    its resolution. Raises ConfigError with one line."""
    vae = cached_vae(cfg)
    if vae is None:
        return
    resolution = training_resolution(cfg)
    root, shards = cfg.data.latents, expand_shards(cfg.data.shards)
    if not shards:
        return  # the stream reports missing shards itself
    if "://" not in root:
        if not Path(root).is_dir():
            raise ConfigError(f"data.latents: {root} is not a folder (build it with python -m training.latent_cache)")
        missing = [s for s in shards if not Path(cache_shard(s, root)).is_file()]
        if missing:
            raise ConfigError(f"data.latents: {len(missing)} of {len(shards)} shards have no cache shard in {root} "
                              f"(first: {Path(missing[0]).name}); run python -m training.latent_cache on them")
    first = next(shard_samples(cache_shard(shards[0], root)), None)
    if first is None or KEY_INFO not in first:
        raise ConfigError(f"data.latents: {cache_shard(shards[0], root)} holds no latent-cache sample")
    try:
        check_info(json.loads(first[KEY_INFO]), vae, resolution, root)
    except CacheMismatch as err:
        raise ConfigError(f"data.latents: {err}") from err
