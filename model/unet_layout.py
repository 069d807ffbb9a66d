"""The block layout of an SD-style UNet, and a container that holds one module per layer of it.

The motion and audio modules sit after layer j of block i; their state-dict names follow the UNet's
(`down_blocks.1.2`, `mid_block.0`, `up_blocks.3.0`) so checkpoints read like the UNet they extend.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Literal

from torch import nn

Kind = Literal["down_blocks", "mid_block", "up_blocks"]


@dataclass(frozen=True)
class Level:
    kind: Kind
    index: int  # block index inside `kind` (0 for the mid block)
    layers: int  # resnet(+attention) layers, each followed by a motion module
    channels: int
    in_channels: int  # the block's `in_channels` argument in diffusers: width entering a down block, skip width of an up block
    cross_attention: bool  # has spatial transformers (and so reference attention and audio modules)
    heads: int  # spatial attention heads at this level


def _per_block(value: int | list[int] | tuple[int, ...], n: int) -> list[int]:
    return list(value) if isinstance(value, (list, tuple)) else [int(value)] * n


def unet_levels(config: dict) -> list[Level]:
    """Down, mid and up blocks of a UNet2DConditionModel config, in execution order."""
    if int(config.get("transformer_layers_per_block", 1) or 1) != 1 or isinstance(config["layers_per_block"], (list, tuple)):
        raise ValueError("only SD-style UNets (one transformer layer, one layers_per_block) are supported")
    channels = list(config["block_out_channels"])
    n = len(channels)
    heads = _per_block(config.get("num_attention_heads") or config["attention_head_dim"], n)
    layers = int(config["layers_per_block"])
    down, up = config["down_block_types"], config["up_block_types"]
    levels = [
        Level("down_blocks", i, layers, channels[i], channels[max(i - 1, 0)], "CrossAttn" in down[i], heads[i])
        for i in range(n)
    ]
    levels.append(Level("mid_block", 0, 1, channels[-1], channels[-1], True, heads[-1]))
    levels += [
        Level("up_blocks", i, layers + 1, channels[n - 1 - i], channels[max(n - 2 - i, 0)], "CrossAttn" in up[i], heads[n - 1 - i])
        for i in range(n)
    ]
    return levels


class PerLevel(nn.Module):
    """One optional module per layer of every level: `down_blocks[i][j]`, `mid_block[0][0]`, `up_blocks[i][j]`."""

    def __init__(self, levels: list[Level], make: Callable[[Level, int], nn.Module | None]) -> None:
        super().__init__()
        self.down_blocks = nn.ModuleList()
        self.mid_block = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for level in levels:
            slots = nn.ModuleList()
            for layer in range(level.layers):
                module = make(level, layer)
                if module is None:
                    break
                slots.append(module)
            getattr(self, level.kind).append(slots)

    def get(self, level: Level, layer: int) -> nn.Module | None:
        slots = getattr(self, level.kind)[level.index]
        return slots[layer] if layer < len(slots) else None

    def items(self) -> Iterator[tuple[str, nn.Module]]:
        """(prefix, module) for every present slot, e.g. ('down_blocks.0.1', module)."""
        for kind in ("down_blocks", "mid_block", "up_blocks"):
            for i, slots in enumerate(getattr(self, kind)):
                for j, module in enumerate(slots):
                    yield f"{kind}.{i}.{j}", module
