"""Parameter counts of a preset's model per component, built on the meta device (instant, no memory,
no weights): `python -m model.sizes sd15` checks the paper-sized model builds without a GPU;
`--audio-encoder 1024x24` sizes it for another audio encoder (width x layers, e.g. a wav2vec2-large)."""
from __future__ import annotations

import argparse
import dataclasses
import sys

import torch

from model.net import build_hallo_modules
from model.presets import PRESETS, Preset, get_preset


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def component_counts(preset: Preset) -> dict[str, int]:
    """Parameter counts per component, built on the meta device."""
    with torch.device("meta"):
        modules = build_hallo_modules(preset)
    unet = modules.denoising_unet
    return {
        "reference_unet": count_parameters(modules.reference_unet),
        "denoising_unet.spatial": count_parameters(unet.spatial),
        "denoising_unet.motion_modules": count_parameters(unet.motion_modules),
        "denoising_unet.audio_modules": count_parameters(unet.audio_modules),
        "face_locator": count_parameters(modules.face_locator),
        "image_proj": count_parameters(modules.image_proj),
        "audio_proj": count_parameters(modules.audio_proj),
    }


def with_audio_encoder(preset: Preset, width: int, layers: int) -> Preset:
    """The preset for an audio encoder of `width` x `layers` (what training reads from the encoder's config)."""
    return dataclasses.replace(preset, wav2vec2={"hidden_size": width, "num_hidden_layers": layers})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", choices=sorted(PRESETS))
    parser.add_argument("--audio-encoder", metavar="WIDTHxLAYERS", help="audio encoder shape, e.g. 1024x24 "
                                                                       "(default: the preset's)")
    args = parser.parse_args(argv)
    preset = get_preset(args.preset)
    if args.audio_encoder:
        try:
            width, layers = (int(n) for n in args.audio_encoder.lower().split("x"))
        except ValueError:
            parser.error(f"--audio-encoder {args.audio_encoder!r}: give WIDTHxLAYERS, e.g. 1024x24")
        preset = with_audio_encoder(preset, width, layers)
    counts = component_counts(preset)
    width = max(len(k) for k in counts)
    for name, n in counts.items():
        print(f"{name:<{width}}  {n:>13,d}  ({n / 1e6:.1f}M)")
    print(f"{'total':<{width}}  {sum(counts.values()):>13,d}  ({sum(counts.values()) / 1e6:.1f}M)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
