"""A weights folder as a diffusers pipeline, loadable by plain diffusers:

    from diffusers import DiffusionPipeline
    pipe = DiffusionPipeline.from_pretrained("runs/stage2/export", trust_remote_code=True)
    pipe(image="face.jpg", audio="speech.wav", out="talking.mp4", steps=40)

`save_weights` writes model_index.json (the five components, each as ["model.diffusers_pipeline", class]:
diffusers looks the class and its loading base, ModelMixin, up in this module) and pipeline.py, which only
imports `HalloForgePipeline` from here (both written by model/diffusers_files.py): diffusers runs that file
(hence `trust_remote_code=True`), so the folder loads offline wherever hallo-forge is installed, and the same
from a hub id. The bases (VAE, wav2vec2, insightface) are not components: weights.yaml names them, as
for `hallo-generate`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from diffusers import DiffusionPipeline, ModelMixin  # noqa: F401 - diffusers reads ModelMixin from this module

from foundation.config import load_config
from model.face_locator import FaceLocator  # noqa: F401 - the component classes model_index.json names here
from model.generate_config import GenerateConfig
from model.net import COMPONENTS, HalloModules, HalloNet
from model.projections import AudioProj, ImageProj  # noqa: F401
from model.reference_unet import ReferenceUNet  # noqa: F401
from model.unet3d import DenoisingUNet3D  # noqa: F401
from model.weights import INDEX_FILE, read_index


class HalloForgePipeline(DiffusionPipeline):
    """The five trained modules; a call generates a talking video as `hallo-generate` does."""

    def __init__(self, reference_unet, denoising_unet, face_locator, image_proj, audio_proj) -> None:
        super().__init__()
        self.register_modules(reference_unet=reference_unet, denoising_unet=denoising_unet, face_locator=face_locator,
                              image_proj=image_proj, audio_proj=audio_proj)

    @property
    def weights_folder(self) -> Path:
        """The folder the components came from (its weights.yaml names the bases)."""
        loaded = Path(self.denoising_unet.config._name_or_path)
        return loaded if (loaded / INDEX_FILE).is_file() else loaded.parent

    def __call__(self, image: str | Path, audio: str | Path, out: str | Path, **settings: Any) -> Path:
        """Animate `image` with `audio` into the video `out`; `settings` are hallo-generate's config keys
        (steps, guidance_scale, seed, device, ...), range-checked as there."""
        from model.generate import generate
        from model.preflight import check_generation

        folder = self.weights_folder
        given = {"weights": str(folder), "image": str(image), "audio": str(audio), "out": str(out), **settings}
        cfg = load_config(GenerateConfig, None, [f"{key}={json.dumps(value)}" for key, value in given.items()])
        net = HalloNet(HalloModules(**{name: getattr(self, name) for name in COMPONENTS}), read_index(folder).behaviour)
        return generate(cfg, check_generation(cfg), net)
