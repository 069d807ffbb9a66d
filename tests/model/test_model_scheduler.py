"""The one noise schedule: v-prediction, zero terminal SNR, trailing spacing, scaled_linear betas; and the samplers on it."""
from __future__ import annotations

import pytest
import torch

from model.scheduler import SAMPLERS, make_sampler, make_scheduler


def test_schedule_definition():
    sched = make_scheduler()
    cfg = sched.config
    assert (cfg.beta_schedule, cfg.prediction_type, cfg.timestep_spacing) == ("scaled_linear", "v_prediction", "trailing")
    assert (cfg.beta_start, cfg.beta_end, cfg.num_train_timesteps) == (0.00085, 0.012, 1000)
    assert sched.alphas_cumprod[-1] == 0  # zero terminal SNR: the last step is pure noise
    sched.set_timesteps(40)
    assert sched.timesteps[0] == 999 and len(sched.timesteps) == 40


def test_training_target_and_sampler_agree():
    """add_noise / get_velocity (training) invert with step (generation) for a perfect prediction."""
    sched = make_scheduler()
    clean, noise = torch.randn(1, 4, 2, 8, 8), torch.randn(1, 4, 2, 8, 8)
    sched.set_timesteps(4)
    t = sched.timesteps[1]
    noisy = sched.add_noise(clean, noise, t[None])
    v = sched.get_velocity(clean, noise, t[None])
    assert torch.allclose(sched.step(v, t, noisy).pred_original_sample, clean, atol=1e-4)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("betas", ["scaled_linear", "linear"])
def test_every_sampler_walks_the_one_schedule_to_the_clean_sample(name, betas):
    """Fed the exact v-prediction of a known clean sample, each sampler ends on it: same betas, zero
    terminal SNR (the first step is pure noise), trailing spacing and v-prediction as training."""
    sampler, schedule = make_sampler(name, betas), make_scheduler(betas)
    assert sampler.config.prediction_type == "v_prediction" and sampler.config.timestep_spacing == "trailing"
    gen = torch.Generator().manual_seed(0)
    clean, x = torch.randn(1, 4, 2, 8, 8, generator=gen), torch.randn(1, 4, 2, 8, 8, generator=gen)
    sampler.set_timesteps(8)
    assert sampler.timesteps[0] == 999
    for t in sampler.timesteps:
        alpha = schedule.alphas_cumprod[int(t)]
        noise = (x - alpha.sqrt() * clean) / (1 - alpha).sqrt()
        x = sampler.step(schedule.get_velocity(clean, noise, t[None]), t, x).prev_sample
    assert torch.allclose(x, clean, atol=1e-4)
