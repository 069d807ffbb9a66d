"""Which audio encoder made a clip's features: the record curation writes into every sample, training checks
against the model it builds, exports keep and generation compares with the encoder it loads.

A record is a plain dict (it travels in JSON and YAML):

    {"name": "TencentGameMate/chinese-wav2vec2-base",  # as the user named it: folder or hub id
     "revision": "<hub commit>" or "",                  # when the folder is a Hugging Face cache snapshot
     "sha256": "<hex>",                                 # of the weight files transformers loads
     "model_type": "wav2vec2", "layers": 12, "width": 768}

Two records name the same encoder when their weights' hash, layers and width agree (`same_encoder`); the
name may differ (the same weights as a local folder on one machine and a hub id on another).
"""
from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path
from typing import Any

from foundation.audio_features import encoder_config

Record = dict[str, Any]
IDENTITY = ("sha256", "layers", "width")
_SNAPSHOT = re.compile(r"/snapshots/(?P<commit>[0-9a-f]{40})(?:/|$)")


def weight_files(folder: Path) -> list[Path]:
    """The files transformers loads weights from: the safetensors ones when there are any, else the .bin ones."""
    for pattern in ("model*.safetensors", "pytorch_model*.bin"):
        found = sorted(folder.glob(pattern))
        if found:
            return found
    raise FileNotFoundError(f"{folder} has no model*.safetensors or pytorch_model*.bin")


@functools.lru_cache(maxsize=8)
def _hash_files(files: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _size, _mtime in files:
        digest.update(Path(name).name.encode() + b"\0")
        with open(name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def weights_sha256(folder: Path) -> str:
    """sha256 over the weight files' names and bytes; cached per process while the files are unchanged."""
    files = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in weight_files(folder))
    return _hash_files(files)


def encoder_record(folder: str | Path, name: str = "") -> Record:
    """The record of the encoder in local `folder`, named `name` (default: the folder)."""
    folder = Path(folder)
    config = encoder_config(folder)
    snapshot = _SNAPSHOT.search(folder.resolve().as_posix())
    return {"name": name or str(folder), "revision": snapshot["commit"] if snapshot else "",
            "sha256": weights_sha256(folder), "model_type": config["model_type"],
            "layers": int(config["num_hidden_layers"]), "width": int(config["hidden_size"])}


def same_encoder(a: Record, b: Record) -> bool:
    return all(a.get(key) == b.get(key) for key in IDENTITY)


def same_shape(a: Record, b: Record) -> bool:
    return (a.get("layers"), a.get("width")) == (b.get("layers"), b.get("width"))


def describe(record: Record) -> str:
    """One-line name of a record: name, hash prefix, layers x width."""
    return f"{record.get('name')} (sha256 {str(record.get('sha256'))[:12]}, {record.get('layers')} layers x {record.get('width')})"
