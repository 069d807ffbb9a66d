"""The one noise schedule, shared by training (add_noise / get_velocity) and generation (step), and the
samplers that walk it.

DDIM over 1000 steps, scaled_linear betas 0.00085-0.012, rescaled to zero terminal SNR, trailing
timestep spacing, v-prediction. The reference trains with scaled_linear but samples with linear:
generation takes the beta schedule from the weights' behaviour (ModelBehaviour.sampling_beta_schedule),
so converted Hallo weights sample as Hallo does; training always uses scaled_linear.

Generation's samplers are diffusers schedulers built from that one configuration (`make_sampler`):
the same betas, zero terminal SNR, trailing spacing and v-prediction, so they differ only in how they
integrate from the noise to the clip. DPM-Solver++ and UniPC are multistep solvers (second order
here, first order on the last steps when there are fewer than 15): they reach DDIM's 40-step result in
far fewer steps. With zero terminal SNR their first sigma would be infinite; diffusers clamps the last
alpha_cumprod to 2**-24 for them, which is the same first step to float precision.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, SchedulerMixin, UniPCMultistepScheduler

Sampler = Literal["ddim", "dpmpp", "unipc"]
SAMPLERS: dict[str, str] = {  # name -> what it is, for logs and help
    "ddim": "DDIM (deterministic, first order)",
    "dpmpp": "DPM-Solver++ multistep (second order)",
    "unipc": "UniPC multistep (bh2, second order)",
}


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


def make_sampler(name: Sampler, beta_schedule: Literal["scaled_linear", "linear"] = "scaled_linear") -> SchedulerMixin:
    """Generation's sampler `name`, configured from the one schedule (make_scheduler's config)."""
    config = make_scheduler(beta_schedule).config
    if name == "ddim":
        return DDIMScheduler.from_config(config)
    if name == "dpmpp":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2,
                                                       final_sigmas_type="zero")
    if name == "unipc":
        return UniPCMultistepScheduler.from_config(config, solver_order=2, solver_type="bh2", final_sigmas_type="zero")
    raise ValueError(f"unknown sampler {name!r}: one of {', '.join(SAMPLERS)}")


@dataclass(frozen=True)
class SamplingPreset:
    """A named sampling schedule: sampler, steps and the steps guidance runs on."""

    sampler: Sampler
    steps: int
    guidance_min_timestep: int | None  # None: the weights' behaviour (600 for weights trained here)
    meaning: str


# Chosen by measurement: benchmarks/generate.py, docs/generation.md (Presets).
PRESETS: dict[str, SamplingPreset] = {
    "hallo": SamplingPreset("ddim", 40, 0, "Hallo's sampler: 40 DDIM steps, guidance on every step"),
    "balanced": SamplingPreset("dpmpp", 20, None, "20 DPM-Solver++ steps, guidance on the weights' steps"),
    "fast": SamplingPreset("ddim", 8, None, "8 DDIM steps, guidance on the weights' steps"),
}
