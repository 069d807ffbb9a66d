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

from model.net import HalloNet  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.latent_cache.read import cached_vae  # noqa: E402
from training.loop import main  # noqa: E402
from training.samples import Stage2Decoder  # noqa: E402
from training.hallo_stage import HalloStage, load_init_from  # noqa: E402


class Stage2(HalloStage):
    name = "stage2"
    temporal = True

    def build_net(self, cfg: TrainConfig) -> HalloNet:
        if not cfg.model.init_from:
            raise ValueError("stage 2 needs model.init_from: stage 1's export folder (runs/stage1/export) or "
                             "converted Hallo weights (python -m model.pretrained hallo)")
        net, self.preset = load_init_from(cfg)
        self.trainable = [net.audio_proj, net.denoising_unet.audio_modules, net.denoising_unet.motion_modules]
        return net

    def decoder(self, cfg: TrainConfig) -> Stage2Decoder:
        return Stage2Decoder(self.preset, cfg.data.resolution, cached_vae(cfg))


if __name__ == "__main__":
    sys.exit(main(Stage2()))
