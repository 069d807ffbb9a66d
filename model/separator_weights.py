"""Fetch the vocal separator (MDX-Net Kim_Vocal_2 and audio-separator's model data) for
`hallo-weights fetch` into BASE/uvr/ (foundation.vocals).

Sources, in order: Hallo's Hugging Face repository, which publishes the four files under
`audio_separator/` (a mirror works through HF_ENDPOINT), then the addresses audio-separator itself
downloads from (UVR's model repository for the model, UVR's application data for the JSON files).
The set takes its place only when the model's hash is in the model data, i.e. when audio-separator
will load it.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from foundation.vocals import MODEL_DATA_FILES, MODEL_FILE, missing_files, model_hash

log = logging.getLogger(__name__)

HALLO_REPO, HALLO_FOLDER = "fudan-generative-ai/hallo", "audio_separator"
UVR_MODELS = "https://github.com/TRvlvr/model_repo/releases/download/all_public_uvr_models"
UVR_DATA = "https://raw.githubusercontent.com/TRvlvr/application_data/main"
UVR_URLS = {
    MODEL_FILE: f"{UVR_MODELS}/{MODEL_FILE}",
    "download_checks.json": f"{UVR_DATA}/filelists/download_checks.json",
    "mdx_model_data.json": f"{UVR_DATA}/mdx_model_data/model_data_new.json",
    "vr_model_data.json": f"{UVR_DATA}/vr_model_data/model_data_new.json",
}


def _check(folder: Path) -> None:
    """Raise ValueError unless audio-separator would find the model's parameters (an HTML error page would not)."""
    data = json.loads((folder / "mdx_model_data.json").read_text())
    if model_hash(folder / MODEL_FILE) not in data:
        raise ValueError(f"{MODEL_FILE}'s hash is not in mdx_model_data.json")


def _from_hugging_face(work: Path) -> None:
    from huggingface_hub import hf_hub_download

    for name in (MODEL_FILE, *MODEL_DATA_FILES):
        path = hf_hub_download(HALLO_REPO, f"{HALLO_FOLDER}/{name}", local_dir=work / "hf")
        shutil.move(path, work / name)


def _from_uvr(work: Path) -> None:
    for name, url in UVR_URLS.items():
        log.info("downloading %s", url)
        with urllib.request.urlopen(url, timeout=60) as response, open(work / name, "wb") as out:
            shutil.copyfileobj(response, out)


def fetch_separator(dest: Path) -> None:
    """Put the separator's four files into the folder `dest` (kept if all are already there)."""
    if not missing_files(dest / MODEL_FILE):
        return
    dest.mkdir(parents=True, exist_ok=True)
    errors = []
    for where, source in ((HALLO_REPO, _from_hugging_face), ("UVR's repositories", _from_uvr)):
        with tempfile.TemporaryDirectory(dir=dest, prefix=".fetch-") as tmp:
            try:
                source(Path(tmp))
                _check(Path(tmp))
            except Exception as err:  # noqa: BLE001 - offline, refused, moved, not loadable: try the next source
                errors.append(f"{where}: {str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}")
                log.warning("vocal separator from %s", errors[-1])
                continue
            for name in (MODEL_FILE, *MODEL_DATA_FILES):
                os.replace(Path(tmp) / name, dest / name)
            return
    raise RuntimeError(f"could not fetch the vocal separator {MODEL_FILE} ({'; '.join(errors)})")
