"""Fetch SyncNet's released weights (`syncnet_v2.model`, syncnet_python's format) for
`hallo-weights fetch`: the lip-sync filter of curation and the LSE-C / LSE-D metrics
of `model.evaluate` and training validation read them from BASE/syncnet/syncnet_v2.model.

Sources, in order: LatentSync's Hugging Face repositories, which publish the file under
`auxiliary/` (the file list is read at fetch time, so a move inside a repository is followed),
then the address syncnet_python's own download script uses. Whatever arrives must load as a
SyncNet state dict before it takes its place.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import Optional

from foundation.syncnet import load_syncnet

log = logging.getLogger(__name__)

FILE_NAME = "syncnet_v2.model"
LATENTSYNC_REPOS = ("ByteDance/LatentSync", "ByteDance/LatentSync-1.5", "ByteDance/LatentSync-1.6")
SYNCNET_PYTHON_URL = "http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model"


def find_in_listing(files: list[str]) -> Optional[str]:
    """The SyncNet file in a repository's file list: `auxiliary/syncnet_v2.model` if there, else any
    file of that name; None if the repository has none."""
    matches = sorted(f for f in files if f.rsplit("/", 1)[-1] == FILE_NAME)
    preferred = [f for f in matches if f.startswith("auxiliary/")]
    return (preferred or matches or [None])[0]


def _install(downloaded: Path, dest: Path) -> None:
    """Move a downloaded file into place once it loads as SyncNet weights (an HTML error page would not)."""
    load_syncnet(downloaded)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(downloaded, dest)


def _from_hugging_face(repo: str, dest: Path, work: Path) -> bool:
    from huggingface_hub import HfApi, hf_hub_download

    try:
        path = find_in_listing(HfApi().list_repo_files(repo))
        if path is None:
            log.warning("%s holds no %s", repo, FILE_NAME)
            return False
        log.info("downloading %s from %s", path, repo)
        _install(Path(hf_hub_download(repo, path, local_dir=work)), dest)
        return True
    except Exception as err:  # noqa: BLE001 - offline, rate-limited, renamed, not loadable: try the next source
        log.warning("%s from %s: %s", FILE_NAME, repo, str(err).splitlines()[0] if str(err) else type(err).__name__)
        return False


def _from_url(url: str, dest: Path, work: Path) -> None:
    log.info("downloading %s", url)
    part = work / FILE_NAME
    with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
        shutil.copyfileobj(response, out)
    _install(part, dest)


def fetch_syncnet(dest: Path, repos: tuple[str, ...] = LATENTSYNC_REPOS, url: str = SYNCNET_PYTHON_URL) -> None:
    """Put SyncNet's weights at `dest` (kept if already there)."""
    if dest.is_file():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".fetch-") as tmp:
        if any(_from_hugging_face(repo, dest, Path(tmp)) for repo in repos):
            return
        log.warning("no LatentSync repository served %s; trying syncnet_python's address", FILE_NAME)
        try:
            _from_url(url, dest, Path(tmp))
        except (OSError, ValueError) as err:
            raise RuntimeError(f"could not fetch {FILE_NAME} from {', '.join(repos)} nor {url}: {err}") from err
