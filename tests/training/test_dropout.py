"""Training's condition dropout draws the same Drop flags that guidance's unconditional branch uses."""
import dataclasses

import torch
from diffusers import AutoencoderKL

from model.weights_behaviour import ModelBehaviour
from model.net import UNCONDITIONAL, Drop, HalloNet, build_hallo_modules
from model.presets import TINY_VAE, get_preset
from training.config import DiffusionConfig
from training.hallo_step import HalloTrainStep

NONE = dict(drop_unconditional=0.0, drop_reference=0.0, drop_identity=0.0, drop_face_region=0.0, drop_audio=0.0,
            drop_motion=0.0)


def _step(behaviour: ModelBehaviour, **probabilities: float) -> HalloTrainStep:
    net = HalloNet(build_hallo_modules(get_preset("tiny")), behaviour)
    return HalloTrainStep(net, AutoencoderKL(**TINY_VAE), DiffusionConfig(**{**NONE, **probabilities}), temporal=True)


def test_the_unconditional_drop_is_guidance_s_branch():
    generator = torch.Generator().manual_seed(0)
    assert _step(ModelBehaviour(), drop_unconditional=1.0)._drop(generator) == UNCONDITIONAL
    kept = _step(ModelBehaviour(uncond_face_region="keep"), drop_unconditional=1.0)._drop(generator)
    assert kept == dataclasses.replace(UNCONDITIONAL, face_region=False)


def test_each_condition_drops_on_its_own_and_nothing_without_probabilities():
    generator = torch.Generator().manual_seed(0)
    assert _step(ModelBehaviour(), drop_face_region=1.0)._drop(generator) == Drop(face_region=True)
    state = generator.get_state()
    assert _step(ModelBehaviour())._drop(generator) == Drop()
    assert torch.equal(state, generator.get_state())  # probability 0 draws nothing: runs without dropout stay as they were
