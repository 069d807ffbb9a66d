"""Hallo2's long-video augmentations of the motion frames (diffusion.motion_noise_timesteps, motion_patch_drop)
change exactly what they should: nothing when off, the latent pixels outside the face when dropping, every
latent a little (as the schedule's small timesteps noise it) when noising; and training applies them."""
import pytest
import torch
from diffusers import AutoencoderKL

from model.weights_behaviour import ModelBehaviour
from model.net import HalloNet, build_hallo_modules
from model.presets import TINY_VAE, get_preset
from training.config import DiffusionConfig
from training.hallo_step import HalloTrainStep

B, M, C, H = 2, 2, 4, 8  # batch, motion frames, latent channels, latent size of the tiny preset (64 px)


def _step(**augment) -> HalloTrainStep:
    net = HalloNet(build_hallo_modules(get_preset("tiny")), ModelBehaviour())
    cfg = DiffusionConfig(drop_unconditional=0, drop_reference=0, drop_identity=0, drop_face_region=0, drop_audio=0,
                          drop_motion=0, **augment)
    return HalloTrainStep(net, AutoencoderKL(**TINY_VAE), cfg, temporal=True)


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Motion latents, a face rectangle in pixels (rows 12-43, columns 20-51 of 64), and that rectangle at the
    latent size: latent pixels touching the face (rows 1-5, columns 2-6) are inside it."""
    motion = torch.randn((B, M, C, H, H), generator=torch.Generator().manual_seed(1)) + 0.5
    face = torch.zeros(B, 3, 8 * H, 8 * H)
    face[:, :, 12:44, 20:52] = 1
    inside = torch.zeros(H, H, dtype=torch.bool)
    inside[1:6, 2:7] = True
    return motion, face, inside


def test_off_by_default_changes_nothing_and_draws_nothing():
    assert DiffusionConfig().motion_noise_timesteps == 0 and DiffusionConfig().motion_patch_drop == 0
    motion, face, _ = _inputs()
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    assert torch.equal(_step().augment_motion(motion, face, generator), motion)
    assert torch.equal(state, generator.get_state())  # runs without augmentation keep their random streams


@pytest.mark.parametrize("rate", [1.0, 0.25])
def test_patch_drop_zeroes_latent_pixels_outside_the_face_only(rate):
    motion, face, inside = _inputs()
    out = _step(motion_patch_drop=rate).augment_motion(motion, face, torch.Generator().manual_seed(0))
    assert torch.equal(out[..., inside], motion[..., inside])  # the face is never touched
    outside = out[..., ~inside]  # (b, m, c, pixels)
    dropped = (outside == 0).all(dim=2)  # a latent pixel is dropped in all its channels at once
    assert torch.equal((outside == 0).any(dim=2), dropped)
    assert torch.equal(outside[~dropped[:, :, None].expand_as(outside)],
                       motion[..., ~inside][~dropped[:, :, None].expand_as(outside)])
    share = dropped.float().mean().item()
    assert share == 1.0 if rate == 1.0 else 0.15 < share < 0.35  # 156 draws of p = 0.25
    if rate < 1:  # each sample and frame draws its own pattern
        assert not torch.equal(dropped[0, 0], dropped[0, 1]) and not torch.equal(dropped[0, 0], dropped[1, 0])


def test_motion_noise_is_the_schedule_s_noise_at_a_small_timestep():
    motion, face, _ = _inputs()
    step = _step(motion_noise_timesteps=50)
    out = step.augment_motion(motion, face, torch.Generator().manual_seed(0))
    alphas = step.scheduler.alphas_cumprod
    # out = sqrt(a_t) x + sqrt(1 - a_t) noise, t in [0, 50): per sample, the scale of x and of the noise
    for sample in range(B):
        x, y = motion[sample].flatten(), out[sample].flatten()
        scale = (x @ y / (x @ x)).item()  # least squares; the noise is independent of x
        residual = (y - scale * x).std().item()
        assert alphas[49].sqrt() - 0.02 < scale < 1 + 1e-3
        assert (1 - alphas[0]).sqrt() * 0.7 < residual < (1 - alphas[49]).sqrt() * 1.3
    assert (out - motion).abs().max() < 1.0  # a small timestep: the motion frames stay what they were
    assert not torch.equal(out[0], motion[0])


def test_training_feeds_the_augmented_motion_latents_to_the_net(monkeypatch):
    step = _step(motion_patch_drop=1.0)
    motion, face, inside = _inputs()
    seen = {}

    def forward(noisy, timesteps, reference, motion_latents, *args, **kwargs):
        seen["motion"] = motion_latents
        return torch.zeros_like(noisy)

    monkeypatch.setattr(step.net, "forward", forward)  # what the net is given, not what it makes of it
    batch = {"reference_latents": torch.randn(B, C, H, H), "motion_latents": motion,
             "target_mean": torch.randn(B, 6, C, H, H), "target_std": torch.zeros(B, 6, C, H, H),
             "face_mask": face, "face_embedding": torch.zeros(B, 512)}
    step.forward(batch, torch.Generator().manual_seed(0))
    latents = seen["motion"]
    assert latents.shape == (B, M, C, H, H)
    assert (latents[..., ~inside] == 0).all() and (latents[..., inside] != 0).all()
