"""Putting a foreign checkpoint's tensors onto our state dict, key by key, and saying what did not fit.

Shared by the AnimateDiff motion-module import and Hallo's net.pth conversion: each supplies its key
rename (and, where a layer differs only in form, a reshape); both insist on a one-to-one fit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

Rename = Callable[[str], "str | None"]  # checkpoint key -> our key, None when it has no place here
Adapt = Callable[[str, torch.Tensor, tuple[int, ...]], torch.Tensor]  # (our key, tensor, wanted shape) -> tensor


@dataclass
class StateMapping:
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # our key -> tensor in the target's dtype
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys with no place in the target
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)  # key, shape, wanted
    differing: list[tuple[str, str]] = field(default_factory=list)  # key, the earlier key of the same tensor
    missing: list[str] = field(default_factory=list)  # our keys no checkpoint tensor filled
    sources: dict[str, str] = field(default_factory=dict)  # our key -> the checkpoint key it came from

    @property
    def ok(self) -> bool:
        return not (self.unexpected or self.mismatched or self.differing or self.missing)

    def summary(self) -> str:
        problems = {
            "unexpected": self.unexpected,
            "missing": self.missing,
            "mismatched": [f"{k} {got} vs {want}" for k, got, want in self.mismatched],
            "differing copies": [f"{k} vs {other}" for k, other in self.differing],
        }
        parts = [f"{len(self.tensors)} tensors mapped"]
        parts += [f"{len(keys)} {name} (e.g. {', '.join(keys[:3])})" for name, keys in problems.items() if keys]
        return "; ".join(parts)


def map_state_dict(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor], rename: Rename,
                   adapt: Adapt | None = None, atol: float = 0.0) -> StateMapping:
    """Every tensor of `state` onto its key of `target`, cast to the target's dtype. A checkpoint may store
    one of our tensors more than once (positional tables): the copies must agree within `atol`."""
    out = StateMapping()
    for key, value in state.items():
        ours = rename(key)
        if ours is None or ours not in target:
            out.unexpected.append(key)
            continue
        want = tuple(target[ours].shape)
        if adapt is not None:
            value = adapt(ours, value, want)
        if tuple(value.shape) != want:
            out.mismatched.append((key, tuple(state[key].shape), want))
            continue
        value = value.to(target[ours].dtype)
        if ours in out.tensors:
            if not torch.allclose(out.tensors[ours], value, rtol=0, atol=atol):
                out.differing.append((key, out.sources[ours]))
            continue
        out.tensors[ours], out.sources[ours] = value, key
    out.missing = [k for k in target if k not in out.tensors]
    return out
