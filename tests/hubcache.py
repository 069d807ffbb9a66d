"""A Hugging Face hub cache populated offline: what `snapshot_download` leaves, holding local folders."""
from __future__ import annotations

import shutil
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def add_to_cache(cache: Path, repo_id: str, folder: Path, subfolder: str = "") -> Path:
    """Store `folder` as the main revision of `repo_id` (at `subfolder`) in the hub cache `cache`."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(folder, snapshot / subfolder, dirs_exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot / subfolder
