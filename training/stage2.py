"""Stage 2: lip sync, expression and motion from 14-frame clips with audio.

Starts from model.init_from: stage 1's export (which carries the AnimateDiff motion modules stage 1
was initialised with) or any other weights folder, e.g. a converted Hallo checkpoint to fine-tune.
Its motion modules are kept as they are; only the audio projection, the hierarchical audio attention
and the motion modules train.

    deepspeed training/stage2.py --config configs/stage2.yaml [--set key=value ...]
    python training/stage2.py --config configs/demo/stage2.yaml       # one process, CPU
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script (deepspeed/torchrun/python training/stage2.py)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from model.net import HalloNet  # noqa: E402
from model.presets import Preset  # noqa: E402
from training.latent_cache.read import cached_vae  # noqa: E402
from training.loop import main  # noqa: E402
from training.samples import Stage2Decoder  # noqa: E402
from training.hallo_stage import HalloStage, load_init_from  # noqa: E402


class Stage2(HalloStage):
    name = "stage2"
    temporal = True

    def initial_net(self) -> tuple[HalloNet, Preset]:
        cfg = self.cfg
        if not cfg.model.init_from:
            raise ValueError("stage 2 needs model.init_from: stage 1's export folder (runs/stage1/export) or "
                             "converted Hallo weights (hallo-weights hallo)")
        return load_init_from(cfg)

    def trainable(self, net: HalloNet) -> list[torch.nn.Module]:
        return [net.audio_proj, net.denoising_unet.audio_modules, net.denoising_unet.motion_modules]

    def decoder(self) -> Stage2Decoder:
        return Stage2Decoder(self.preset, self.cfg.data.resolution, cached_vae(self.cfg))


if __name__ == "__main__":
    sys.exit(main(Stage2))
