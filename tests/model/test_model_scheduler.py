"""The one noise schedule: v-prediction, zero terminal SNR, trailing spacing, scaled_linear betas."""
from __future__ import annotations

import torch

from model.scheduler import make_scheduler


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
