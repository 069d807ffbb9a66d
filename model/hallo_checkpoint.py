"""Hallo's released `net.pth` -> this model's modules: an explicit key mapping, checked strictly.

`net.pth` (HF fudan-generative-ai/hallo, `hallo/net.pth`) is the state_dict of Hallo's `Net`: 2,656
tensors at SD-1.5 size. Where its names differ from ours:

    Hallo                                                  ours
    denoising_unet.<2D UNet key>                           denoising_unet.spatial.<same>
    denoising_unet.<block>.motion_modules.<j>.*            denoising_unet.motion_modules.* (AnimateDiff
                                                           mapping, model/motion_checkpoint.py)
    denoising_unet.<block>.audio_modules.<j>.K             denoising_unet.audio_modules.<block>.<j>.K'
        norm, proj_in, proj_out                            the same (1x1 convs become Linear: a reshape)
        transformer_blocks.0.attn2_{0,1,2}                 audio_attn.{0,1,2}
        transformer_blocks.0.zero_conv_{full,face,lip}     region_proj.{0,1,2} (1x1 conv -> Linear)
        transformer_blocks.0.{attn1,norm1,norm2,norm3,ff}  {attn1,norm1,norm2,norm3,ff}
    imageproj.*, audioproj.*                               image_proj.*, audio_proj.*
    reference_unet.*, face_locator.*                       the same

Strict: every tensor of the file is used exactly once, every tensor of the model is filled, shapes
must agree, and the two copies of each motion module's positional table must be equal. Any
problem raises HalloCheckpointError with one line that names the key.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import torch

from model.motion_checkpoint import animatediff_to_ours, ours_to_animatediff
from model.presets import Preset, with_base_configs
from model.state_mapping import map_state_dict

COMPONENT_PREFIXES = {
    "reference_unet.": "reference_unet.",
    "denoising_unet.": "denoising_unet.",
    "face_locator.": "face_locator.",
    "imageproj.": "image_proj.",
    "audioproj.": "audio_proj.",
}
_BLOCK = r"(down_blocks\.\d+|up_blocks\.\d+|mid_block)"
_AUDIO = re.compile(rf"^{_BLOCK}\.audio_modules\.(\d+)\.(.+)$")
_AUDIO_RENAMES = (
    ("transformer_blocks.0.attn2_", "audio_attn."),
    ("transformer_blocks.0.zero_conv_full.", "region_proj.0."),
    ("transformer_blocks.0.zero_conv_face.", "region_proj.1."),
    ("transformer_blocks.0.zero_conv_lip.", "region_proj.2."),
    ("transformer_blocks.0.", ""),
)


class HalloCheckpointError(ValueError):
    """The file is not a Hallo net.pth that fits this model; the message names the key, in one line."""


def _denoising_key(key: str) -> str | None:
    if ".motion_modules." in key:
        mapped = animatediff_to_ours(key)
        return None if mapped is None else f"motion_modules.{mapped}"
    audio = _AUDIO.match(key)
    if audio is not None:
        block, layer, rest = audio.groups()
        if block == "mid_block":
            block = "mid_block.0"
        for old, new in _AUDIO_RENAMES:
            if rest.startswith(old):
                rest = new + rest[len(old):]
                break
        return f"audio_modules.{block}.{layer}.{rest}"
    return f"spatial.{key}"


def hallo_to_ours(key: str) -> str | None:
    """Our state-dict key (component-prefixed) for a net.pth key; None if it is not a Hallo key."""
    for theirs, ours in COMPONENT_PREFIXES.items():
        if key.startswith(theirs):
            rest = key[len(theirs):]
            if theirs != "denoising_unet.":
                return ours + rest
            mapped = _denoising_key(rest)
            return None if mapped is None else ours + mapped
    return None


def ours_to_hallo(key: str) -> str:
    """The net.pth key for one of our component-prefixed keys (the first copy of a positional table)."""
    component, rest = key.split(".", 1)
    theirs = next(t for t, o in COMPONENT_PREFIXES.items() if o == component + ".")
    if component != "denoising_unet":
        return theirs + rest
    part, rest = rest.split(".", 1)
    if part == "spatial":
        return theirs + rest
    if part == "motion_modules":
        return theirs + ours_to_animatediff(rest)[0]
    kind, index, layer, rest = rest.split(".", 3)
    block = kind if kind == "mid_block" else f"{kind}.{index}"
    if not rest.startswith(("norm.", "proj_in.", "proj_out.")):
        for old, new in _AUDIO_RENAMES:
            if new and rest.startswith(new):
                rest = old + rest[len(new):]
                break
        else:
            rest = "transformer_blocks.0." + rest
    return f"{theirs}{block}.audio_modules.{layer}.{rest}"


def read_hallo_net(path: str | Path) -> dict[str, torch.Tensor]:
    """torch.load with weights_only=True (memory-mapped: nothing is read until used)."""
    path = Path(path)
    if not path.is_file():
        raise HalloCheckpointError(f"{path} not found (hallo-weights fetch downloads it)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise HalloCheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated?): {reason}") from None
    if not isinstance(state, dict):
        raise HalloCheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
    for key, value in state.items():
        if not key.startswith(tuple(COMPONENT_PREFIXES)):
            raise HalloCheckpointError(f"{path} is not a Hallo net.pth: unexpected key '{key}' (Hallo's start with "
                                       f"{', '.join(COMPONENT_PREFIXES)})")
        if not isinstance(value, torch.Tensor):
            raise HalloCheckpointError(f"{path}: key '{key}' holds a {type(value).__name__}, not a tensor")
    return state


def _shape(state: dict[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in state:
        raise HalloCheckpointError(f"not a Hallo net.pth: key '{key}' is missing")
    return tuple(state[key].shape)


def hallo_preset(state: dict[str, torch.Tensor], preset: Preset, unet: dict, wav2vec2: dict) -> Preset:
    """`preset` with every size net.pth fixes read from its tensors; the UNet and the audio features'
    shapes come from the base folder's configs (`unet`, `wav2vec2`), as Hallo builds its modules."""
    token_dim = int(unet["cross_attention_dim"])
    image_out, face_embed_dim = _shape(state, "imageproj.proj.weight")
    audio_hidden, audio_in = _shape(state, "audioproj.proj1.weight")
    (audio_token_dim,) = _shape(state, "audioproj.norm.weight")
    audio_out = _shape(state, "audioproj.proj3.weight")[0]
    per_frame = int(wav2vec2["num_hidden_layers"]) * int(wav2vec2["hidden_size"])
    frames = audio_in // per_frame
    if audio_in % per_frame or frames % 2 == 0:
        raise HalloCheckpointError(
            f"'audioproj.proj1.weight' takes {audio_in} inputs: not an odd number of frames of the base's wav2vec2 "
            f"features ({wav2vec2['num_hidden_layers']} layers x {wav2vec2['hidden_size']})")
    for key, total, unit in (("imageproj.proj.weight", image_out, token_dim), ("audioproj.proj3.weight", audio_out,
                                                                               audio_token_dim)):
        if total % unit:
            raise HalloCheckpointError(f"'{key}' has {total} outputs: not whole tokens of width {unit}")
    locator = [_shape(state, "face_locator.conv_in.weight")[0]]
    while f"face_locator.blocks.{2 * len(locator) - 1}.weight" in state:
        locator.append(_shape(state, f"face_locator.blocks.{2 * len(locator) - 1}.weight")[0])
    pe = next((k for k in state if k.endswith(".pos_encoder.pe")),
              "denoising_unet.mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0."
              "attention_blocks.0.pos_encoder.pe")
    return dataclasses.replace(
        with_base_configs(preset, unet, wav2vec2),
        face_embed_dim=face_embed_dim,
        image_tokens=image_out // token_dim,
        face_locator_channels=tuple(locator),
        audio_window=(frames - 1) // 2,
        audio_hidden=audio_hidden,
        audio_tokens=audio_out // audio_token_dim,
        audio_token_dim=None if audio_token_dim == token_dim else audio_token_dim,
        motion_max_len=_shape(state, pe)[1],
    )


def _conv1x1_as_linear(ours: str, value: torch.Tensor, want: tuple[int, ...]) -> torch.Tensor:
    if ours.startswith("denoising_unet.audio_modules.") and len(want) == 2 and value.shape[2:] == (1, 1):
        return value.reshape(value.shape[:2])  # Hallo's 1x1 conv, our Linear
    return value


def map_hallo_state_dict(
    state: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Every net.pth tensor onto `target` (our component-prefixed state dict), cast to the target's dtype.

    Raises HalloCheckpointError on the first problem (with a count of all of them).
    """
    mapping = map_state_dict(state, target, hallo_to_ours, _conv1x1_as_linear)
    problems = [f"not a Hallo net.pth that fits this model: unexpected key '{key}'" for key in mapping.unexpected]
    problems += [f"key '{key}' has shape {got}, the model needs {want}" for key, got, want in mapping.mismatched]
    problems += [f"key '{key}' differs from its other copy '{other}' (positional tables)" for key, other in mapping.differing]
    problems += [f"key '{ours_to_hallo(k)}' is missing (net.pth truncated or of another model)" for k in mapping.missing]
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise HalloCheckpointError(problems[0] + more)
    return mapping.tensors
