"""Generate a talking-head video from one portrait and one speech recording.

    python -m model.generate --weights WEIGHTS --image face.jpg --audio speech.wav --out out.mp4 \
        [--pose-weight 1 --face-weight 1 --lip-weight 1 --cfg 3.5 --steps 40 --seed 42 --device auto]

Settings come from GenerateConfig's defaults < `--config configs/generate.yaml` < `--set key=value`
< the flags above. WEIGHTS is a folder written by `python -m model.pretrained init` or by training.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch

from foundation.audio_features import SAMPLE_RATE, load_wav2vec2, wav2vec2_features
from foundation.cpu_threads import set_cpu_threads
from foundation.identity import IdentityEncoder
from foundation.masks import region_masks
from foundation.media_io import read_audio, write_video
from model.pipeline import HalloPipeline, Reference, SamplerSettings
from model.portrait import prepare_portrait
from model.weights import load_net, load_vae, read_index, resolve
from foundation.config import ConfigError, load_config, opt

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class GenerateConfig:
    weights: str = opt("", "weights folder (weights.yaml + the five modules)")
    image: str = opt("", "reference portrait; the face is found and cropped like the training clips")
    audio: str = opt("", "driving speech, any format PyAV reads; the video lasts as long as it")
    out: str = opt("out.mp4", "output mp4: 25 fps H.264 with the driving audio as AAC")
    pose_weight: float = opt(1.0, "weight of the audio branch on the background/pose region")
    face_weight: float = opt(1.0, "weight of the audio branch on the face (without the lips)")
    lip_weight: float = opt(1.0, "weight of the audio branch on the lips")
    cfg: float = opt(3.5, "classifier-free guidance scale (1 = no guidance, half the compute)")
    steps: int = opt(40, "DDIM steps per clip")
    seed: int = opt(42, "seed of the initial noise: the same seed gives the same video")
    device: str = opt("auto", "torch device: auto (cuda when available), cpu, cuda, cuda:1, ...")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = opt("auto", "auto = float16 on cuda, float32 on cpu")
    cpu_threads: int = opt(0, "torch threads on CPU; 0 = auto: this process's CPUs, at most torch's default "
                           "(OMP_NUM_THREADS wins; foundation/cpu_threads.py)")
    clip_frames: int = opt(0, "frames per clip; 0 = the weights folder's value")
    motion_frames: int = opt(-1, "previous frames carried into each clip; -1 = the weights folder's value")
    progress: bool = opt(True, "show a progress bar per clip")

    def validate(self) -> None:
        if self.steps <= 0:
            raise ConfigError("config key 'steps' must be positive")
        if self.cfg < 0:
            raise ConfigError("config key 'cfg' must be >= 0")
        if self.cpu_threads < 0:
            raise ConfigError("config key 'cpu_threads' must be >= 0 (0 = auto)")
        if self.clip_frames < 0 or self.motion_frames < -1:
            raise ConfigError("config keys 'clip_frames' >= 0 and 'motion_frames' >= -1 required")


def resolve_device(cfg: GenerateConfig) -> tuple[torch.device, torch.dtype]:
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          "cpu" if cfg.device == "auto" else cfg.device)
    if cfg.dtype == "auto":
        return device, torch.float16 if device.type == "cuda" else torch.float32
    return device, DTYPES[cfg.dtype]


def onnx_providers(device: torch.device) -> list[str]:
    import onnxruntime

    if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def read_image(path: str | Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def prepare(cfg: GenerateConfig) -> tuple[HalloPipeline, Reference, torch.Tensor, SamplerSettings]:
    """Load the weights and turn the image and the audio into the pipeline's inputs."""
    device, dtype = resolve_device(cfg)
    if device.type == "cpu":
        set_cpu_threads(cfg.cpu_threads)
    index = read_index(cfg.weights)
    size = index.resolution
    portrait = prepare_portrait(read_image(cfg.image), size)
    masks = region_masks(portrait.landmarks, (size, size), (size // 8, size // 8))
    embedding, _ = IdentityEncoder(resolve(cfg.weights, index.insightface), onnx_providers(device)).embed(portrait.image)
    waveform, _ = read_audio(cfg.audio, SAMPLE_RATE, mono=True)
    wav2vec2, extractor = load_wav2vec2(resolve(cfg.weights, index.wav2vec2), device)
    features = wav2vec2_features(waveform[0], wav2vec2, extractor, index.fps)
    del wav2vec2
    reference = Reference(
        image=torch.from_numpy(portrait.image).permute(2, 0, 1).float() / 127.5 - 1.0,
        face_region=torch.from_numpy(masks.face_region),
        regions=torch.from_numpy(masks.regions),
        embedding=torch.from_numpy(embedding),
    )
    settings = SamplerSettings(
        clip_frames=cfg.clip_frames or index.clip_frames,
        motion_frames=index.motion_frames if cfg.motion_frames < 0 else cfg.motion_frames,
        steps=cfg.steps,
        cfg=cfg.cfg,
        audio_weights=(cfg.pose_weight, cfg.face_weight, cfg.lip_weight),
        seed=cfg.seed,
    )
    pipeline = HalloPipeline(load_net(cfg.weights, dtype), load_vae(resolve(cfg.weights, index.vae), dtype), device)
    return pipeline, reference, features, settings


def generate(cfg: GenerateConfig) -> Path:
    pipeline, reference, features, settings = prepare(cfg)
    log.info("%d frames in clips of %d (+%d motion frames), %d steps, cfg %.2f",
             features.shape[0], settings.clip_frames, settings.motion_frames, settings.steps, settings.cfg)
    frames = pipeline(reference, features, settings, progress=cfg.progress)
    audio, rate = read_audio(cfg.audio, mono=False)
    write_video(cfg.out, frames, read_index(cfg.weights).fps, audio, rate)
    return Path(cfg.out)


FLAGS = ("weights", "image", "audio", "out", "pose_weight", "face_weight", "lip_weight", "cfg", "steps", "seed", "device")


def parse_args(argv: list[str] | None) -> GenerateConfig:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML file with GenerateConfig keys (e.g. configs/generate.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config key")
    types = {f.name: f.type for f in dataclasses.fields(GenerateConfig)}
    for name in FLAGS:
        kind = {"float": float, "int": int}.get(str(types[name]), str)
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None,
                            help=GenerateConfig.__dataclass_fields__[name].metadata["help"])
    args = parser.parse_args(argv)
    cfg = load_config(GenerateConfig, args.config, args.set)
    cfg = dataclasses.replace(cfg, **{k: getattr(args, k) for k in FLAGS if getattr(args, k) is not None})
    cfg.validate()
    missing = [k for k in ("weights", "image", "audio") if not getattr(cfg, k)]
    if missing:
        raise ConfigError(f"missing {', '.join('--' + k for k in missing)}")
    return cfg


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = parse_args(argv)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {generate(cfg)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
