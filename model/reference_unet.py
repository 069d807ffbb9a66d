"""The ReferenceNet: SD's 2D UNet without its output head.

Only the inputs of its spatial self-attentions are used (model/reference_attention.py), so it has no
`conv_norm_out`/`conv_out`, like the reference's ReferenceNet (whose released weights have none).
"""
from __future__ import annotations

from functools import wraps
from typing import Any

from diffusers import UNet2DConditionModel
from torch import nn

from model.unet3d import unet_config_dict

HEAD_PREFIXES = ("conv_norm_out.", "conv_out.")


class ReferenceUNet(UNet2DConditionModel):
    """UNet2DConditionModel minus the output head; same config, same names for everything else."""

    @wraps(UNet2DConditionModel.__init__)  # the same signature, so diffusers' config machinery sees it
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conv_norm_out = None
        self.conv_act = None
        self.conv_out = nn.Identity()

    @classmethod
    def from_unet(cls, unet: UNet2DConditionModel) -> "ReferenceUNet":
        """A ReferenceNet holding the UNet's weights (all of them but the output head)."""
        model = cls(**unet_config_dict(unet))
        state = {k: v for k, v in unet.state_dict().items() if not k.startswith(HEAD_PREFIXES)}
        model.load_state_dict(state, strict=True)
        return model
