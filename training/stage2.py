"""Stage 2: lip sync, expression and motion from 14-frame clips with audio.

Starts from stage 1's exported weights plus the AnimateDiff motion modules from the bases, and
trains only the audio projection, the hierarchical audio attention and the motion modules.

    deepspeed training/stage2.py --config configs/stage2.yaml [--set key=value ...]
    python training/stage2.py --config configs/demo/stage2.yaml       # one process, CPU
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script (deepspeed/torchrun/python training/stage2.py)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.motion_checkpoint import load_motion_checkpoint  # noqa: E402
from model.net import HalloNet  # noqa: E402
from model.pretrained import base_paths  # noqa: E402
from model.presets import get_preset, with_base_configs  # noqa: E402
from model.unet3d import unet_config_dict  # noqa: E402
from model.weights import load_net  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.latents import cached_vae  # noqa: E402
from training.loop import main  # noqa: E402
from training.samples import Stage2Decoder  # noqa: E402
from training.stage_common import HalloStage  # noqa: E402

log = logging.getLogger(__name__)


class Stage2(HalloStage):
    name = "stage2"
    temporal = True

    def build_net(self, cfg: TrainConfig) -> HalloNet:
        if not cfg.model.init_from:
            raise ValueError("stage 2 needs model.init_from: stage 1's export folder (runs/stage1/export)")
        net = load_net(cfg.model.init_from)
        report = load_motion_checkpoint(net.denoising_unet.motion_modules, base_paths(Path(cfg.model.pretrained_dir))["motion"])
        log.info("motion module: %s", report.summary())
        audio = net.audio_proj.config
        self.preset = with_base_configs(get_preset(cfg.model.preset), unet_config_dict(net.reference_unet),
                                        {"hidden_size": audio.feature_dim, "num_hidden_layers": audio.num_layers})
        self.trainable = [net.audio_proj, net.denoising_unet.audio_modules, net.denoising_unet.motion_modules]
        return net

    def decoder(self, cfg: TrainConfig) -> Stage2Decoder:
        return Stage2Decoder(self.preset, cfg.data.resolution, cached_vae(cfg))


if __name__ == "__main__":
    sys.exit(main(Stage2()))
