"""Generate a talking-head video from one portrait and one speech recording.

    python -m model.generate --weights WEIGHTS --image face.jpg --audio speech.wav --out out.mp4 \
        [--preset auto|hallo|balanced|fast --sampler ddim|dpmpp|unipc --steps N --guidance-scale 3.5
         --guidance-min-timestep T --pose-weight 1 --face-weight 1 --lip-weight 1 --seed 42 --device auto --dtype auto --compile]

Settings come from GenerateConfig's defaults < `--config configs/generate.yaml` < `--set key=value`
< the flags above, all range-checked. WEIGHTS is a folder written by `hallo-weights init`
or by training (or a hub id). Every input is checked before a model loads (model/preflight.py).
Next to the video, OUT.json records what ran: the settings, the sampler, its steps, the guided steps,
the denoiser passes and the seconds per frame.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from foundation.config import ConfigError, describe_markdown, load_config
from model.generate_config import GenerateConfig

if TYPE_CHECKING:  # the model code loads after the arguments are parsed: `--help` imports no torch
    import torch

    from model.weights_behaviour import ModelBehaviour
    from model.net import HalloNet
    from model.pipeline import HalloPipeline, Reference, SamplerSettings
    from model.preflight import GenerationInputs

log = logging.getLogger(__name__)


def onnx_providers(device: torch.device) -> list[str]:
    import onnxruntime

    if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def sampling(cfg: GenerateConfig, behaviour: ModelBehaviour) -> tuple[str, dict]:
    """The sampling preset's name and the SamplerSettings fields it gives, with the settings' overrides applied."""
    from model.scheduler import PRESETS

    name = behaviour.sampling_preset if cfg.preset == "auto" else cfg.preset
    preset = PRESETS[name]
    floor = preset.guidance_min_timestep if cfg.guidance_min_timestep is None else cfg.guidance_min_timestep
    return name, {"sampler": preset.sampler if cfg.sampler == "auto" else cfg.sampler,
                  "steps": preset.steps if cfg.steps is None else cfg.steps,
                  "guidance_min_timestep": floor}  # None still: the pipeline takes the weights' behaviour


def prepare(cfg: GenerateConfig, inputs: GenerationInputs | None = None, net: HalloNet | None = None
            ) -> tuple[HalloPipeline, Reference, torch.Tensor, SamplerSettings]:
    """Load the weights (unless `net` holds them already) and turn the image and the audio into the pipeline's
    inputs."""
    import torch

    from foundation.audio_features import SAMPLE_RATE, load_wav2vec2, num_frames, wav2vec2_features
    from foundation.cpu_threads import set_cpu_threads
    from foundation.identity import IdentityEncoder
    from foundation.masks import region_masks
    from foundation.media_io import read_audio
    from foundation.vocals import MODEL_FILE, read_vocals
    from model.pipeline import HalloPipeline, Reference, SamplerSettings
    from model.preflight import check_generation
    from model.weights import load_net, load_vae, resolve

    inputs = inputs or check_generation(cfg)
    weights, index, device, dtype, portrait = inputs.weights, inputs.index, inputs.device, inputs.dtype, inputs.portrait
    if device.type == "cpu":
        set_cpu_threads(cfg.cpu_threads)
    size = index.resolution
    masks = region_masks(portrait.landmarks, (size, size), (size // 8, size // 8))
    identity = IdentityEncoder(resolve(weights, index.insightface, "insightface"), onnx_providers(device))
    embedding, _ = identity.embed(portrait.image)
    if index.behaviour.separate_vocals:  # as the training features were; the video keeps the original audio
        waveform = read_vocals(cfg.audio, resolve(weights, index.vocal_separator, "vocal_separator") / MODEL_FILE,
                               SAMPLE_RATE)
    else:
        waveform, _ = read_audio(cfg.audio, SAMPLE_RATE, mono=True)
    wav2vec2, extractor = load_wav2vec2(inputs.audio_encoder or resolve(weights, index.wav2vec2, "wav2vec2"), device)
    # Weights that expect it (Hallo's) get the waveform padded to whole clips before wav2vec2.
    features = wav2vec2_features(waveform[0], wav2vec2, extractor, index.fps, index.behaviour.audio_pad_frames)
    del wav2vec2
    reference = Reference(
        image=torch.from_numpy(portrait.image).permute(2, 0, 1).float() / 127.5 - 1.0,
        face_region=torch.from_numpy(masks.face_region),
        regions=torch.from_numpy(masks.regions),
        embedding=torch.from_numpy(embedding),
    )
    settings = SamplerSettings(
        clip_frames=index.clip_frames if cfg.clip_frames is None else cfg.clip_frames,
        motion_frames=index.motion_frames if cfg.motion_frames is None else cfg.motion_frames,
        guidance_scale=cfg.guidance_scale,
        batched_guidance=cfg.batched_guidance,
        **sampling(cfg, index.behaviour)[1],
        audio_weights=(cfg.pose_weight, cfg.face_weight, cfg.lip_weight),
        seed=cfg.seed,
        frames=num_frames(waveform.shape[1], index.fps, SAMPLE_RATE),
    )
    net = load_net(weights, dtype) if net is None else net.to(dtype)
    pipeline = HalloPipeline(net, load_vae(resolve(weights, index.vae, "vae"), dtype), device)
    if cfg.compile:
        pipeline.net.denoising_unet.compile()  # in place: the first pass of each batch size compiles
    return pipeline, reference, features, settings


def generate(cfg: GenerateConfig, inputs: GenerationInputs | None = None, net: HalloNet | None = None) -> Path:
    from foundation.media_io import VideoWriter, read_audio
    from model.preflight import check_generation

    inputs = inputs or check_generation(cfg)
    pipeline, reference, features, settings = prepare(cfg, inputs, net)
    plan = pipeline.plan(settings)
    ran = {"preset": sampling(cfg, inputs.index.behaviour)[0],
           **plan.describe(-(-settings.frames // settings.clip_frames), settings.frames)}
    log.info("%d frames in clips of %d (+%d motion frames): preset %s, %s, %d steps, guidance %.2f on %d of them "
             "(timestep >= %d), %d denoiser passes (%.2f per frame)", settings.frames, settings.clip_frames,
             settings.motion_frames, ran["preset"], ran["sampler"], ran["steps"], settings.guidance_scale, ran["guided_steps"],
             plan.guidance_min_timestep, ran["passes"], ran["passes_per_frame"])
    audio, rate = read_audio(cfg.audio, mono=False)
    start = time.perf_counter()
    written = 0
    with VideoWriter(cfg.out, inputs.index.fps, audio, rate) as writer:  # each clip encoded as it comes: flat memory
        for frames in pipeline.stream(reference, features, settings, progress=cfg.progress):
            writer.write(frames)
            written += len(frames)
    seconds = time.perf_counter() - start
    record = {**ran, "frames": written, "seconds": round(seconds, 3), "seconds_per_frame": round(seconds / written, 4),
              "device": str(inputs.device), "dtype": str(inputs.dtype).removeprefix("torch."),
              "batched_guidance": settings.batched_guidance and pipeline.batched_guidance, "settings": dataclasses.asdict(cfg)}
    sidecar(cfg.out).write_text(json.dumps(record, indent=2) + "\n")
    log.info("%.1f s for %d frames (%.3f s per frame)", seconds, written, seconds / written)
    return Path(cfg.out)


def sidecar(out: str | Path) -> Path:
    """The JSON record written next to a generated video: OUT.json (out.mp4 -> out.mp4.json)."""
    return Path(f"{out}.json")


FLAGS = ("weights", "image", "audio", "out", "preset", "sampler", "steps", "guidance_scale", "guidance_min_timestep",
         "pose_weight", "face_weight", "lip_weight", "seed", "device", "dtype", "compile", "allow_no_face")

RENAMED = tuple(f.metadata["was"] for f in dataclasses.fields(GenerateConfig) if f.metadata.get("was"))  # cfg, ...


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model.generate", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML file with GenerateConfig keys (e.g. configs/generate.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config key")
    parser.add_argument("--print-config", action="store_true", help="print every config key with its default and exit")
    types = {f.name: f.type for f in dataclasses.fields(GenerateConfig)}
    for name in FLAGS:
        flag, help = "--" + name.replace("_", "-"), GenerateConfig.__dataclass_fields__[name].metadata["help"]
        if str(types[name]) == "bool":
            parser.add_argument(flag, dest=name, action="store_true", default=None, help=help)
        else:
            kind = {"float": float, "int": int, "Optional[int]": int}.get(str(types[name]), str)
            parser.add_argument(flag, dest=name, type=kind, default=None, help=help)
    for old in RENAMED:  # taken only to be refused by the config with the new name (exit 2), not as unknown
        parser.add_argument("--" + old.replace("_", "-"), dest=old, default=None, help=argparse.SUPPRESS)
    return parser


def parse_args(argv: list[str] | None) -> GenerateConfig | None:
    """The config from defaults < --config < --set < flags, range-checked; None for --print-config."""
    args = build_parser().parse_args(argv)
    if args.print_config:
        print(describe_markdown(GenerateConfig))
        return None
    flags = [f"{k}={json.dumps(getattr(args, k))}" for k in (*FLAGS, *RENAMED) if getattr(args, k) is not None]  # JSON is YAML
    cfg = load_config(GenerateConfig, args.config, [*args.set, *flags])
    missing = [k for k in ("weights", "image", "audio") if not getattr(cfg, k)]
    if missing:
        raise ConfigError(f"missing {', '.join('--' + k for k in missing)}")
    return cfg


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = parse_args(argv)
        if cfg is None:
            return 0
        from model.preflight import check_generation

        inputs = check_generation(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {generate(cfg, inputs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
