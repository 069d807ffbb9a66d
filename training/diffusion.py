"""Noise, targets and loss weighting for v-prediction training on the shared schedule."""
from __future__ import annotations

import torch
from diffusers import DDIMScheduler


def sample_noise(latents: torch.Tensor, offset: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise plus a per-sample, per-channel offset (brightness/contrast range of SD)."""
    noise = torch.randn(latents.shape, generator=generator, dtype=latents.dtype, device=latents.device)
    if offset > 0:
        shape = (latents.shape[0], latents.shape[1]) + (1,) * (latents.ndim - 2)
        noise = noise + offset * torch.randn(shape, generator=generator, dtype=latents.dtype, device=latents.device)
    return noise


def snr(scheduler: DDIMScheduler, timesteps: torch.Tensor) -> torch.Tensor:
    alphas = scheduler.alphas_cumprod.to(timesteps.device)[timesteps].float()
    return alphas / (1 - alphas)


def min_snr_weights(scheduler: DDIMScheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample min-SNR-gamma weight for a v-prediction loss: min(snr + 1, gamma) / (snr + 1).

    snr + 1 is what the v-target implicitly weights by; it stays finite at the zero-SNR final step.
    """
    if gamma <= 0:
        return torch.ones_like(timesteps, dtype=torch.float32)
    s = snr(scheduler, timesteps) + 1
    return torch.clamp(s, max=gamma) / s


def v_loss(
    prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """MSE averaged within each sample, weighted per sample, then averaged (not the reverse)."""
    per_sample = (prediction.float() - target.float()).pow(2).flatten(1).mean(1)
    return (per_sample * weights).mean()
