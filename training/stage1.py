"""Stage 1: identity and appearance from frame pairs.

Trains the ReferenceNet, the denoising UNet's spatial layers, the face locator and the image
projection (temporal motion/audio layers off). Initialised from the SD-1.5 UNet and the AnimateDiff
motion modules in the bases, or from any weights folder given as model.init_from (e.g. a converted
Hallo checkpoint); either way the export carries the motion modules on to stage 2.

    deepspeed training/stage1.py --config configs/stage1.yaml [--set key=value ...]
    python training/stage1.py --config configs/demo/stage1.yaml       # one process, CPU
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script (deepspeed/torchrun/python training/stage1.py)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from model.net import HalloNet  # noqa: E402
from foundation import hub  # noqa: E402
from model.pretrained import init_from_base  # noqa: E402
from model.presets import Preset, get_preset  # noqa: E402
from training.latent_cache.read import cached_vae  # noqa: E402
from training.loop import main  # noqa: E402
from training.hallo_stage import HalloStage, load_init_from  # noqa: E402
from training.samples import Stage1Decoder  # noqa: E402


class Stage1(HalloStage):
    name = "stage1"
    temporal = False

    def initial_net(self) -> tuple[HalloNet, Preset]:
        cfg = self.cfg
        if cfg.model.init_from:
            return load_init_from(cfg)
        encoder = hub.resolve(cfg.model.audio_encoder, "model.audio_encoder") if cfg.model.audio_encoder else None
        modules, preset = init_from_base(cfg.model.pretrained_folder(), get_preset(cfg.model.preset), encoder)
        return HalloNet(modules), preset

    def trainable(self, net: HalloNet) -> list[torch.nn.Module]:
        return [net.reference_unet, net.denoising_unet.spatial, net.face_locator, net.image_proj]

    def decoder(self) -> Stage1Decoder:
        return Stage1Decoder(self.preset, self.cfg.data.min_ref_gap, self.cfg.data.resolution, cached_vae(self.cfg))


if __name__ == "__main__":
    sys.exit(main(Stage1))
