"""Model folders by local path, object URL or Hugging Face hub id, checked for completeness before anything loads.

Every config key that names a model folder takes a local folder, an object URL (`s3://bucket/pretrained`,
mirrored into the local cache by foundation.storage) or a hub id,
`owner/name[/subfolder][@revision]` (e.g. `facebook/wav2vec2-base-960h`,
`stable-diffusion-v1-5/stable-diffusion-v1-5/unet`). A hub id resolves through the Hugging Face cache
(HF_HOME / HF_HUB_CACHE) as transformers does: the cached snapshot when there is one (and always with
HF_HUB_OFFLINE=1), otherwise it is downloaded into the cache. An existing local path always wins.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from foundation.config import ConfigError
from foundation.storage import StorageError, is_url, local_folder

HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?P<sub>(?:/[\w.-]+)*)(?:@(?P<revision>[\w.-]+))?$")
# Other frameworks' copies of the same weights, never needed here.
IGNORED = ["*.h5", "*.msgpack", "*.ot", "tf_model*", "flax_model*", "rust_model*", "*.tflite", "*.mlmodel"]

# What a complete folder holds: one match per group, any of its patterns.
Needs = Sequence[Sequence[str]]
DIFFUSERS: Needs = (("config.json",), ("diffusion_pytorch_model*.safetensors", "diffusion_pytorch_model*.bin"))
TRANSFORMERS: Needs = (("config.json",), ("model*.safetensors", "pytorch_model*.bin"))
ONNX: Needs = (("*.onnx",),)


def network_help(err: BaseException) -> str:
    """What a failed hub transfer tried and the settings that help, for the end of a one-line error."""
    import os

    from huggingface_hub import constants

    first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
    proxies = [f"{k}={os.environ[k]}" for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy") if os.environ.get(k)]
    offline = ", HF_HUB_OFFLINE=1 is set: unset it to reach the hub" if constants.HF_HUB_OFFLINE else ""
    return (f"tried {constants.ENDPOINT}{offline}; proxy: {', '.join(proxies) or 'none set'} ({type(err).__name__}"
            f"{': ' + first if first else ''}). Settings that help: HF_ENDPOINT=https://hf-mirror.com (a hub mirror, "
            "e.g. in mainland China), HTTPS_PROXY/HTTP_PROXY=http://HOST:PORT, HF_TOKEN (gated repositories, uploads)")


def is_hub_id(ref: str) -> bool:
    return bool(HUB_ID.match(ref)) and not ref.startswith((".", "~"))


def resolve(ref: str, key: str) -> Path:
    """`ref` as a local path: itself if it exists, an object URL's local mirror, else the cached (or freshly
    downloaded) hub snapshot."""
    if is_url(ref):
        try:
            return local_folder(ref)
        except (StorageError, FileNotFoundError) as err:
            raise ConfigError(f"config key '{key}': {err}") from err
    path = Path(ref).expanduser()
    if path.exists():
        return path.resolve()
    if not is_hub_id(ref):
        raise ConfigError(f"config key '{key}': {ref} does not exist")
    from huggingface_hub import constants, snapshot_download

    match = HUB_ID.match(ref)
    sub = match["sub"].strip("/")
    try:
        snapshot = snapshot_download(match["repo"], revision=match["revision"], ignore_patterns=IGNORED,
                                     allow_patterns=[f"{sub}/*"] if sub else None)
    except Exception as err:  # noqa: BLE001 - hub errors have many types; all mean "not available"
        where = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the hub did not answer"
        raise ConfigError(
            f"config key '{key}': {ref} is neither a local folder nor a hub model in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}; {where}: {type(err).__name__})") from err
    folder = Path(snapshot) / sub
    if not folder.is_dir():
        raise ConfigError(f"config key '{key}': hub model {match['repo']} has no folder {sub!r}")
    return folder


def model_folder(ref: str | None, key: str, needs: Needs) -> Path:
    """Resolve `ref` and check that it holds a file for every group of `needs`; ConfigError naming `key`."""
    if not ref:
        raise ConfigError(f"config key '{key}' is not set")
    folder = resolve(ref, key)
    if not folder.is_dir():
        raise ConfigError(f"config key '{key}': {ref} is not a folder")
    for alternatives in needs:
        if not any(next(folder.glob(pattern), None) for pattern in alternatives):
            raise ConfigError(f"config key '{key}': {folder} is incomplete: no {' or '.join(alternatives)}")
    return folder
