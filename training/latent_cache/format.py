"""What a latent-cache shard holds, and the identity of the VAE that made it.

For each curated shard `NAME.tar`, the cache folder holds a shard `NAME.tar` with the same samples
(same `__key__`, same order) and these entries (`python -m training.latent_cache` writes them):

| entry             | content                                                                       |
|-------------------|-------------------------------------------------------------------------------|
| `latent.json`     | `{"vae": sha256 of the VAE's weights, "resolution": R, "frames": n, ...}`;     |
|                   | `"audio_encoder"`: the curated sample's encoder record, kept from its shard;   |
|                   | with an `"error"` instead of latents for a clip that could not be encoded      |
| `latent_mean.npy` | float16 (n, 4, R/8, R/8): mean of the VAE encoder's Gaussian, every frame      |
| `latent_std.npy`  | float16 (n, 4, R/8, R/8): its standard deviation                               |

Both parameters are stored (not one fixed sample), so training draws the target frames' latents
afresh at every step, `mean + std * noise` from the step's generator, exactly as the pixel path's
`latent_dist.sample(generator)` does; reference and motion frames use the mean, as the pixel path
uses the mode. Values are unscaled: the step multiplies by its VAE's scaling factor.
"""
from __future__ import annotations

import functools
import hashlib
from typing import Any

import torch

from training.data import CacheMismatch

KEY_INFO = "latent.json"
KEY_MEAN = "latent_mean.npy"
KEY_STD = "latent_std.npy"
FORMAT = 1  # bumped when the entries change meaning


@functools.lru_cache(maxsize=4)
def vae_identity(vae_dir: str) -> str:
    """sha256 of the VAE's weights (names, shapes and float32 values; not the file format), cached per process."""
    from model.weights import load_vae

    digest = hashlib.sha256()
    for name, tensor in sorted(load_vae(vae_dir, torch.float32).state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def check_info(info: dict[str, Any], vae: str, resolution: int, where: str) -> None:
    """Refuse, in one line, a cache entry made with other weights, at another size or in another format."""
    if info.get("format") != FORMAT:
        raise CacheMismatch(f"latent cache {where} has format {info.get('format')}, this code reads {FORMAT}: rebuild it")
    if info["vae"] != vae:
        raise CacheMismatch(f"latent cache {where} was built with another VAE (weights sha256 {info['vae'][:12]}, "
                            f"this run's VAE is {vae[:12]}): rebuild it with this VAE or point data.latents elsewhere")
    if info["resolution"] != resolution:
        raise CacheMismatch(f"latent cache {where} holds {info['resolution']} px latents, this run trains at "
                            f"{resolution} px: rebuild it with --set encode.resolution={resolution}")
