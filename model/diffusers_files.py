"""The two files that make a weights folder a diffusers pipeline: model_index.json and pipeline.py.

Apart from model/diffusers_pipeline.py (the pipeline class, which generates through model/generate.py)
so that `save_weights` (model/weights.py) writes them without importing generation.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from model.net import COMPONENT_CLASSES, COMPONENTS

MODEL_INDEX = "model_index.json"
PIPELINE_FILE = "pipeline.py"
PIPELINE_MODULE = "model.diffusers_pipeline"  # diffusers looks the classes model_index.json names up there
PIPELINE_CLASS = "HalloForgePipeline"
PIPELINE_SOURCE = f'''\
# Written by hallo-forge (model/diffusers_files.py) so that plain diffusers loads this folder:
#   DiffusionPipeline.from_pretrained(FOLDER, trust_remote_code=True)   (needs `pip install hallo-forge`)
from {PIPELINE_MODULE} import {PIPELINE_CLASS}  # noqa: F401
'''


def model_index() -> dict[str, Any]:
    """model_index.json: the pipeline class in pipeline.py, each component's class in PIPELINE_MODULE."""
    import diffusers

    index: dict[str, Any] = {"_class_name": [Path(PIPELINE_FILE).stem, PIPELINE_CLASS],
                             "_diffusers_version": diffusers.__version__}
    index.update({name: [PIPELINE_MODULE, COMPONENT_CLASSES[name].__name__] for name in COMPONENTS})
    return index


def write_pipeline_files(folder: Path) -> None:
    (folder / MODEL_INDEX).write_text(json.dumps(model_index(), indent=2) + "\n")
    (folder / PIPELINE_FILE).write_text(PIPELINE_SOURCE)
