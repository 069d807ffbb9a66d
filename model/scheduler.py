"""The one noise schedule, shared by training (add_noise / get_velocity) and generation (step).

DDIM over 1000 steps, scaled_linear betas 0.00085-0.012, rescaled to zero terminal SNR, trailing
timestep spacing, v-prediction. The reference trains with scaled_linear but samples with linear:
generation takes the beta schedule from the weights' behaviour (ModelBehaviour.sampling_beta_schedule),
so converted Hallo weights sample as Hallo does; training always uses scaled_linear.
"""
from __future__ import annotations

from typing import Literal

from diffusers import DDIMScheduler


def make_scheduler(beta_schedule: Literal["scaled_linear", "linear"] = "scaled_linear") -> DDIMScheduler:
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule=beta_schedule,
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=0,
    )
