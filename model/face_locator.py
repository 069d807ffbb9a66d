"""Face locator: the face-region mask (pixel resolution) -> features added after the UNet's conv_in."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn


class FaceLocator(ModelMixin, ConfigMixin):
    """conv3x3 -> [conv, strided conv] per width step, SiLU after each -> zero-initialised conv.

    Three stride-2 steps match the VAE's 8x downsampling, so (b, 3, 512, 512) -> (b, 320, 64, 64).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        block_out_channels: tuple[int, ...] = (16, 32, 64, 128),
        out_channels: int = 320,
    ) -> None:
        super().__init__()
        widths = list(block_out_channels)
        self.conv_in = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            self.blocks.append(nn.Conv2d(c_in, c_in, 3, padding=1))
            self.blocks.append(nn.Conv2d(c_in, c_out, 3, padding=1, stride=2))
        self.conv_out = nn.Conv2d(widths[-1], out_channels, 3, padding=1)
        # zero init: an untrained locator adds nothing to the pretrained UNet
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        """mask (b, in_channels, H, W) in [0, 1] -> (b, out_channels, H/8, W/8)."""
        x = F.silu(self.conv_in(mask))
        for conv in self.blocks:
            x = F.silu(conv(x))
        return self.conv_out(x)
