"""What both stages share: building the wrapped module, exporting weights, validation videos."""
from __future__ import annotations

import abc
import dataclasses
import functools
import io
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Optional

import numpy as np
import soundfile as sf
import torch

from foundation import hub, schema
from foundation.audio_encoder import Record, encoder_record
from foundation.masks import region_masks
from foundation.media_io import write_video
from model.weights_behaviour import ModelBehaviour, with_overrides
from model.net import HalloNet
from model.pipeline import HalloPipeline, Reference, SamplerSettings
from model.presets import Preset, get_preset, with_base_configs
from model.pretrained import base_paths, weights_index
from model.unet3d import unet_config_dict
from model.weights import load_net, load_vae, save_weights
from training.config import TrainConfig
from training.data import Decoder, expand_shards, raw_samples
from training.frames import decode_frames, to_unit_range
from training.hallo_step import HalloTrainStep, enable_checkpointing, set_trainable

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def recorded_encoder(cfg: TrainConfig) -> Optional[tuple[str, Record]]:
    """model.audio_encoder (preflight sets it) with its record, for the exports; None: the base's wav2vec2."""
    ref = cfg.model.audio_encoder
    return (ref, encoder_record(hub.resolve(ref, "model.audio_encoder"), ref)) if ref else None


def load_init_from(cfg: TrainConfig) -> tuple[HalloNet, Preset]:
    """model.init_from's weights (with the behaviour they record) and the preset at their sizes."""
    net = load_net(cfg.model.init_from)
    audio = net.audio_proj.config
    preset = with_base_configs(get_preset(cfg.model.preset), unet_config_dict(net.reference_unet),
                               {"hidden_size": audio.feature_dim, "num_hidden_layers": audio.num_layers})
    return net, dataclasses.replace(preset, audio_window=audio.window)


class HalloStage(abc.ABC):
    """One training stage, built whole from its run's config: `module` (what DeepSpeed wraps), the data
    decoder, exports and validation videos. Subclasses set `name` and `temporal` and say how the network
    starts and which of its modules train.

    The run's behaviour (model/weights_behaviour.py) is the initial weights' own with model.behaviour applied;
    training computes with it and every export records it.
    """

    name: str
    temporal: bool

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        self.cfg = cfg
        net, self.preset = self.initial_net()
        net.behaviour = self.behaviour = self.trained_behaviour(with_overrides(net.behaviour, cfg.model.behaviour))
        set_trainable(net, self.trainable(net))
        if not self.behaviour.motion_in_plain_blocks:  # modules that never run stay as they are
            for module in net.denoising_unet.plain_block_motion_modules():
                module.requires_grad_(False)
        if cfg.model.gradient_checkpointing:
            enable_checkpointing(net)
        dtype = DTYPES[cfg.run.precision]
        vae = load_vae(base_paths(cfg.model.pretrained_folder())["vae"], dtype).to(device)
        # Buffers too (e.g. the motion modules' positional tables), which DeepSpeed leaves in fp32.
        self.module = HalloTrainStep(net.to(device, dtype), vae, cfg.diffusion, self.temporal)

    @abc.abstractmethod
    def initial_net(self) -> tuple[HalloNet, Preset]:
        """The network with its initial weights, and the preset at their sizes."""

    @abc.abstractmethod
    def trainable(self, net: HalloNet) -> list[torch.nn.Module]:
        """The modules of `net` this stage trains."""

    @abc.abstractmethod
    def decoder(self) -> Decoder:
        """Raw shard sample -> training sample (tensors)."""

    def trained_behaviour(self, inherited: ModelBehaviour) -> ModelBehaviour:
        """How the weights compute after this stage (exported, and used by validation).

        temporal: whether this stage trains the motion and audio modules. Guidance may drop the
        face-locator features only if this run trains without them and the initial weights allow it.
        """
        diffusion = self.cfg.diffusion
        trained_without = diffusion.drop_face_region > 0 or diffusion.drop_unconditional > 0
        dropped = trained_without and inherited.uncond_face_region == "drop"
        return dataclasses.replace(inherited, temporal=self.temporal, uncond_face_region="drop" if dropped else "keep")

    def export(self, module: torch.nn.Module, out_dir: Path) -> None:
        """save_weights into a fresh folder, then swap it in, so `export/` is always complete."""
        index = weights_index(self.preset, self.cfg.model.pretrained_dir, self.behaviour,  # bases named as given
                              recorded_encoder(self.cfg))
        tmp = out_dir.with_name(f".{out_dir.name}.{uuid.uuid4().hex}.tmp")
        save_weights(module.net, tmp, index)
        old = out_dir.with_name(f".{out_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)

    @functools.cached_property
    def held_out(self) -> dict[str, Any]:
        """The first sample of data.validation_shards (or, lacking those, of the training shards)."""
        shards = expand_shards(self.cfg.data.validation_shards)
        if not shards:
            log.warning("no data.validation_shards: validating on a training sample")
            shards = expand_shards(self.cfg.data.shards)
        return next(raw_samples(shards, 0, 1, self.cfg.run.seed))

    def validate(self, module: torch.nn.Module, out_dir: Path, steps: int) -> Optional[np.ndarray]:
        """Animate a held-out clip's middle frame with its own audio; writes validation.mp4, returns frames."""
        raw = self.held_out
        meta = schema.check_sample(raw)
        size, middle = self.preset.resolution, meta.num_frames // 2
        landmarks = schema.decode_npy(raw[schema.KEY_LANDMARKS]).astype(np.float32)[middle] * (size / meta.size)
        masks = region_masks(landmarks, (size, size), (size // 8, size // 8))
        frames_needed = min(meta.num_frames, self.preset.infer_frames)
        features = torch.from_numpy(schema.decode_npy(raw[schema.KEY_AUDIO_FEATURES]).astype(np.float32))[:frames_needed]
        reference = Reference(
            image=to_unit_range(decode_frames(raw[schema.KEY_VIDEO], [middle], size))[0],
            face_region=torch.from_numpy(masks.face_region),
            regions=torch.from_numpy(masks.regions),
            embedding=torch.from_numpy(schema.decode_npy(raw[schema.KEY_FACE_EMB]).astype(np.float32)),
        )
        settings = SamplerSettings(clip_frames=self.preset.infer_frames, motion_frames=self.preset.infer_motion_frames,
                                   steps=steps, seed=self.cfg.run.seed)
        net, vae = module.net, module.vae
        try:
            frames = HalloPipeline(net, vae, next(net.parameters()).device)(reference, features, settings, progress=False)
        finally:
            net.train()
        audio, rate = sf.read(io.BytesIO(raw[schema.KEY_AUDIO]), dtype="float32", always_2d=True)
        write_video(out_dir / "validation.mp4", frames, meta.fps, audio.T, rate)
        return frames
