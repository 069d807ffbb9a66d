"""Make the tiny VAE stand-in (`examples/standin_vae/`): an AutoencoderKL at the tiny preset's sizes that
really reconstructs the bundled media, so that the tests and the demo can show training learn.

    python -m examples.train_standin_vae [--out examples/standin_vae] [--steps 4000] [--seed 0]

A random VAE reconstructs a frame at about 10 dB PSNR and its latents carry no image, so nothing
downstream can learn. This one is trained briefly and deterministically (seeded, one CPU thread) on
64x64 crops of what the tests and the demo feed it:
- the frames of the fixture talking clips (`examples.fixtures`: both face photos, the mouth open and
  shut), cropped around the face as curation and generation crop, with jittered crop boxes;
- random crops of the three bundled photos (`examples/assets`), for everything else.
Loss: MSE + L1 on pixels and a 1e-6 KL term. The posterior's log-variance starts at -10 (std 0.007),
so the sampled latents training draws are the image plus a little noise, not noise (the random VAE's
posterior std was 0.19 against latents of std 0.04). The scaling factor is set to 1/std of the
latents, so scaled latents have unit variance as SD's do. `python -m examples.standins` copies the
folder. The same torch version reproduces the weights; the printed PSNR is on frames it never saw
(a fixture clip rendered with another seed, and the photos cropped as generation crops them).
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL
from tqdm import tqdm

from examples import fixtures
from foundation.faces import FaceAnalyzer, FacesConfig, crop_boxes, crop_frame
from foundation.media_io import read_video
from model.portrait import prepare_portrait
from model.preflight import read_image
from model.presets import TINY_VAE
from examples.standins import STANDIN_VAE
from examples.learning import psnr

log = logging.getLogger(__name__)

SIZE = 64
PHOTOS = ("astronaut", "grace_hopper", "coffee")
CLIPS = ("in_sync", "scene_cut")  # every face photo, mouth open and shut
INITIAL_LOGVAR = -10.0
KL_WEIGHT = 1e-6


def clip_crops(path: Path, cuts: list[int], rng: np.random.Generator, jitter: float) -> list[np.ndarray]:
    """Every frame's face crop (curation's crop rule, per frame), each also with a jittered box."""
    cfg, crops = FacesConfig(), []
    with FaceAnalyzer(cfg) as analyzer:
        for index, frame in enumerate(read_video(path, fixtures.FPS)):
            if index in cuts:
                analyzer.reset()
            found = analyzer.analyze(frame)
            if not len(found.boxes):
                continue
            height, width = frame.shape[:2]
            box = crop_boxes(found.boxes[:1], width, height, cfg, fixtures.FPS)[0]
            side = box[2] * rng.uniform(1 - jitter, 1 + jitter)
            shift = rng.uniform(-jitter / 2, jitter / 2, 2) * side + (box[2] - side) / 2
            jittered = np.array([box[0] + shift[0], box[1] + shift[1], side], np.float32)
            crops += [crop_frame(frame, box, SIZE), crop_frame(frame, jittered, SIZE)]
    return crops


def photo_crops(count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Random square crops (30-100% of the short side) of every bundled photo."""
    crops = []
    for name in PHOTOS:
        image = read_image(fixtures.ASSETS / f"{name}.jpg")
        height, width = image.shape[:2]
        for _ in range(count):
            side = rng.uniform(0.3, 1.0) * min(height, width)
            box = np.array([rng.uniform(0, width - side), rng.uniform(0, height - side), side], np.float32)
            crops.append(crop_frame(image, box, SIZE))
    return crops


def fixture_crops(work: Path, seed: int, jitter: float = 0.12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    crops: list[np.ndarray] = []
    for variant in CLIPS:
        info = fixtures.generate(variant, work / f"{variant}-{seed}.mp4", seed=seed)
        crops += clip_crops(info.path, info.cuts, rng, jitter)
    return np.stack(crops)


def training_images(work: Path, seed: int) -> np.ndarray:
    return np.concatenate([fixture_crops(work, seed), np.stack(photo_crops(100, np.random.default_rng(seed)))])


def held_out_images(work: Path, seed: int) -> np.ndarray:
    """A fixture clip rendered with another seed, and each face photo cropped as generation crops it."""
    rng = np.random.default_rng(seed)
    info = fixtures.generate("in_sync", work / f"held-out-{seed}.mp4", seed=seed)
    portraits = [prepare_portrait(read_image(fixtures.ASSETS / f"{name}.jpg"), SIZE).image for name in PHOTOS[:2]]
    return np.stack(clip_crops(info.path, [], rng, jitter=0.0)[::2] + portraits)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def train_vae(images: np.ndarray, steps: int, seed: int, batch: int = 16, lr: float = 3e-3) -> AutoencoderKL:
    torch.manual_seed(seed)
    vae = AutoencoderKL(**{k: v for k, v in TINY_VAE.items() if k != "scaling_factor"})
    half = vae.config.latent_channels
    with torch.no_grad():  # start the posterior narrow: latents are the image, not noise
        vae.quant_conv.weight[half:].zero_()
        vae.quant_conv.bias[half:].fill_(INITIAL_LOGVAR)
    data = to_tensor(images)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.05)
    bar = tqdm(range(steps), desc="tiny VAE", unit="step")
    for _ in bar:
        x = data[torch.randint(0, len(data), (batch,), generator=generator)]
        x = torch.where(torch.rand(batch, 1, 1, 1, generator=generator) < 0.5, x.flip(-1), x)
        posterior = vae.encode(x).latent_dist
        y = vae.decode(posterior.sample(generator=generator)).sample
        kl = posterior.kl().mean() / posterior.mean[0].numel()
        loss = (y - x).pow(2).mean() + 0.5 * (y - x).abs().mean() + KL_WEIGHT * kl
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    return vae.eval()


@torch.no_grad()
def latent_stats(vae: AutoencoderKL, images: np.ndarray) -> tuple[float, float]:
    """Std of the posterior means and mean posterior std, both unscaled."""
    posterior = vae.encode(to_tensor(images)).latent_dist
    return float(posterior.mean.std()), float(posterior.std.mean())


@torch.no_grad()
def reconstruction_psnr(vae: AutoencoderKL, images: np.ndarray) -> float:
    """PSNR (dB, 8-bit) of decode(posterior mean) against the images, over all of them."""
    x = to_tensor(images)
    y = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
    return psnr(((y.permute(0, 2, 3, 1) + 1) * 127.5).round().numpy(), images)


def make(out: Path, steps: int, seed: int) -> dict[str, float]:
    torch.set_num_threads(1)  # reproducible and, for a model this small, as fast as more threads
    with tempfile.TemporaryDirectory() as tmp:
        images = training_images(Path(tmp), seed)
        held_out = held_out_images(Path(tmp), seed + 1)
    log.info("%d training crops, %d held-out crops", len(images), len(held_out))
    vae = train_vae(images, steps, seed)
    latent_std, posterior_std = latent_stats(vae, images)
    vae.register_to_config(scaling_factor=round(1.0 / latent_std, 4))
    vae.save_pretrained(out)
    return {"train_psnr": reconstruction_psnr(vae, images), "held_out_psnr": reconstruction_psnr(vae, held_out),
            "scaled_posterior_std": posterior_std / latent_std}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=STANDIN_VAE)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    stats = make(args.out, args.steps, args.seed)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v:.4g}" for k, v in stats.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
