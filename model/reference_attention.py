"""Reference attention: the ReferenceNet's spatial self-attention inputs become extra keys/values of
the denoising UNet's spatial self-attention.

Implemented as a diffusers attention processor on every `attn1` of a `BasicTransformerBlock`; the
processor sees exactly `norm1(h)`, which is what the reference stores and reads. The features travel
as `cross_attention_kwargs={"reference": {...}}`: a writer fills the dict, a reader takes from it,
so nothing is hidden in module state and the same model can be called with or without a reference.
`reference_rows` (a bool per sample) lets one batch mix samples with and without reference attention
(guidance's two branches in one pass): the others' reference keys are masked out.
"""
from __future__ import annotations

from typing import Literal

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

Role = Literal["write", "read", "plain"]

SELF_ATTENTION_SUFFIX = ".attn1"


class ReferenceAttnProcessor(AttnProcessor2_0):
    """SDPA attention that can record (`write`) or attend to (`read`) reference features.

    Keys of the `reference` dict are transformer-block paths (e.g. `down_blocks.0.attentions.0.
    transformer_blocks.0`), identical in the ReferenceNet and the denoising UNet's spatial part.
    """

    def __init__(self, block_name: str, role: Role) -> None:
        super().__init__()
        self.block_name = block_name
        self.role = role

    def __call__(  # type: ignore[override]
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        reference: dict[str, torch.Tensor] | None = None,
        reference_rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if reference is not None and self.role == "write":
            reference[self.block_name] = hidden_states
        elif reference is not None and self.role == "read" and self.block_name in reference:
            ref = reference[self.block_name]
            if ref.ndim == 4:  # (batch, frames, tokens, c): one per frame already
                ref = ref.flatten(0, 1)
            else:  # (batch, tokens, c) -> one copy per frame of the (batch * frames) hidden states
                ref = ref.repeat_interleave(hidden_states.shape[0] // ref.shape[0], dim=0)
            encoder_hidden_states = torch.cat([hidden_states, ref.to(hidden_states.dtype)], dim=1)
            if reference_rows is not None:  # samples without reference attention: its keys masked out
                rows = reference_rows.repeat_interleave(hidden_states.shape[0] // reference_rows.shape[0])
                attention_mask = torch.ones(hidden_states.shape[0], 1, encoder_hidden_states.shape[1], dtype=torch.bool,
                                            device=hidden_states.device)
                attention_mask[:, :, hidden_states.shape[1]:] = rows[:, None, None]
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


def install_reference_processors(unet: UNet2DConditionModel, role: Literal["write", "read"]) -> list[str]:
    """Give every attention of `unet` a ReferenceAttnProcessor; returns the self-attention block names.

    Cross-attentions get the `plain` role only so that they accept the `reference` keyword silently.
    """
    names = []
    for name, module in unet.named_modules():
        if not isinstance(module, Attention):
            continue
        if name.endswith(SELF_ATTENTION_SUFFIX):
            block = name[: -len(SELF_ATTENTION_SUFFIX)]
            module.set_processor(ReferenceAttnProcessor(block, role))
            names.append(block)
        else:
            module.set_processor(ReferenceAttnProcessor(name, "plain"))
    return names
