"""Shared fixtures for the model tests: the tiny preset, fresh tiny modules, random inputs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import soundfile as sf
import torch

from model.net import HalloNet, build_hallo_modules
from examples.standins_cli import main as standins_main
from model.weights_cli import main as weights_cli
from model.presets import Preset, get_preset


@pytest.fixture(scope="session")
def tiny() -> Preset:
    return get_preset("tiny")


def perturb_zero_init(module: torch.nn.Module, seed: int = 0, std: float = 0.05) -> None:
    """Give zero-initialised parameters (face locator out, motion/audio projections) random values,
    so their effect on the output becomes visible in tests."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=gen) * std)


@pytest.fixture
def tiny_net(tiny: Preset) -> HalloNet:
    torch.manual_seed(0)
    net = HalloNet(build_hallo_modules(tiny))
    perturb_zero_init(net)
    return net.eval()


@dataclass
class Batch:
    noisy: torch.Tensor
    ref: torch.Tensor
    motion: torch.Tensor
    embedding: torch.Tensor
    face_mask: torch.Tensor
    audio: torch.Tensor
    regions: torch.Tensor

    def args(self) -> tuple:
        return (self.noisy, torch.tensor([10, 700]), self.ref, self.motion, self.embedding, self.face_mask, self.audio, self.regions)


@pytest.fixture
def batch(tiny: Preset) -> Batch:
    gen = torch.Generator().manual_seed(1)
    b, f, m, h = 2, tiny.train_frames, tiny.train_motion_frames, tiny.latent_size

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen)

    return Batch(
        noisy=randn(b, 4, f, h, h),
        ref=randn(b, 4, h, h),
        motion=randn(b, m, 4, h, h),
        embedding=randn(b, tiny.face_embed_dim),
        face_mask=torch.rand(b, 3, tiny.resolution, tiny.resolution, generator=gen),
        audio=randn(b, f, 2 * tiny.audio_window + 1, tiny.audio_layers, tiny.audio_dim),
        regions=torch.rand(b, 3, h, h, generator=gen),
    )


ASSETS = Path(__file__).resolve().parents[2] / "examples" / "assets"


@pytest.fixture(scope="session")
def portrait() -> Path:
    return ASSETS / "astronaut.jpg"


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """Tiny random stand-ins of every pretrained base, written by the real CLI."""
    base = tmp_path_factory.mktemp("tiny_base")
    assert standins_main(["--to", str(base)]) == 0
    return base


@pytest.fixture(scope="session")
def tiny_weights(tiny_base, tmp_path_factory) -> Path:
    """A generation-ready weights folder initialised from the tiny bases."""
    weights = tmp_path_factory.mktemp("tiny_weights")
    assert weights_cli(["init", "--base", str(tiny_base), "--preset", "tiny", "--to", str(weights)]) == 0
    return weights


@pytest.fixture(scope="session")
def short_speech(tmp_path_factory) -> Path:
    """The first 1.2 s of a real speech recording (30 video frames)."""
    data, rate = sf.read(ASSETS / "speech_0870.wav", dtype="float32")
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    sf.write(path, data[: int(1.2 * rate)], rate)
    return path
