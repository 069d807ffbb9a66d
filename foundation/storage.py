"""Where curation writes and training reads: a local folder or any fsspec URL (s3://bucket/prefix, gs://...).

Object stores have no rename, so "atomic" differs by kind: a local file is written to a temporary
name in its folder, fsynced and renamed; an object is written with one PUT (single or multipart
upload), which becomes visible only once complete. Either way a reader never sees half an object.

Credentials and endpoints come from the store's own standard chain (for S3 through botocore:
environment, shared profile, instance role, and `AWS_ENDPOINT_URL` for S3-compatible stores);
nothing here reads, stores or logs them. Listings are never cached, because other processes
(Ray tasks on other nodes) write the same prefix.
"""
from __future__ import annotations

import glob
import hashlib
import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import IO, Any, Iterable

import braceexpand
import fsspec
from fsspec.implementations.local import LocalFileSystem

log = logging.getLogger(__name__)

_GLOB_CHARS = frozenset("*?[")


class StorageError(OSError):
    """A location that cannot be read or written; the message says which and why in one line."""


def is_url(location: str | os.PathLike) -> bool:
    """True for anything but a local path (`file://` URLs count as local)."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def _filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    return fsspec.core.url_to_fs(url, use_listings_cache=False)


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


class Location:
    """A folder or object prefix to write into, addressed by relative names such as `shards/a.tar`.

    Pickles as its URL only, so a Ray task or a forked worker builds its own client.
    """

    def __init__(self, url: str | os.PathLike) -> None:
        text = str(url)
        self.url = text.rstrip("/") if is_url(text) else str(Path(text.removeprefix("file://")).expanduser().absolute())
        try:
            self.fs, self.root = _filesystem(self.url)
        except (ValueError, ImportError) as err:  # an unknown scheme, or its fsspec package is missing
            raise StorageError(f"cannot use {self.url}: {_one_line(err)}") from err
        self.local = isinstance(self.fs, LocalFileSystem)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return Location, (self.url,)

    def __repr__(self) -> str:
        return f"Location({self.url!r})"

    def path(self, rel: str = "") -> str:
        """The filesystem path of `rel` (for a store: bucket/key, without the scheme)."""
        return f"{self.root.rstrip('/')}/{rel}" if rel else self.root

    def uri(self, rel: str = "") -> str:
        """What a user or another tool addresses `rel` by: a local path or a full URL."""
        return self.path(rel) if self.local else f"{self.url}/{rel}" if rel else self.url

    # -- writing -------------------------------------------------------------------------------------------

    def staging_file(self, rel: str) -> Path:
        """A local file to build `rel` in before `commit`: beside it locally (so the rename is atomic),
        in the temporary folder for a store."""
        name = f".{Path(rel).name}.{uuid.uuid4().hex}.tmp"
        if self.local:
            folder = Path(self.path(rel)).parent
            folder.mkdir(parents=True, exist_ok=True)
            return folder / name
        folder = Path(tempfile.gettempdir()) / "hallo-forge-staging"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    def commit(self, staged: Path, rel: str) -> None:
        """Make the staged file visible as `rel`, whole or not at all; the staged file is gone afterwards."""
        try:
            if self.local:
                with open(staged, "rb+") as fh:
                    os.fsync(fh.fileno())
                os.replace(staged, self.path(rel))
            else:
                self.fs.put_file(str(staged), self.path(rel))
        finally:
            staged.unlink(missing_ok=True)

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write `rel` atomically (see the module docstring)."""
        staged = self.staging_file(rel)
        staged.write_bytes(data)
        self.commit(staged, rel)

    def upload(self, source: Path, rel: str) -> None:
        """Copy a local file to `rel`, atomically; the source stays."""
        if self.local:
            staged = self.staging_file(rel)
            shutil.copyfile(source, staged)
            self.commit(staged, rel)
        else:
            self.fs.put_file(str(source), self.path(rel))

    def delete(self, rels: Iterable[str]) -> None:
        paths = [self.path(rel) for rel in rels]
        if paths:
            self.fs.rm(paths)

    def ensure_writable(self) -> None:
        """Create the folder (or check the bucket) and write and delete a probe; StorageError if that fails."""
        probe = f".write-probe-{uuid.uuid4().hex}"
        try:
            if self.local:
                Path(self.root).mkdir(parents=True, exist_ok=True)
            self.write_bytes(probe, b"")
            self.delete([probe])
        except Exception as err:  # noqa: BLE001 - any failure means the same thing to the user
            raise StorageError(f"cannot write to {self.url}: {_one_line(err)}") from err

    # -- reading -------------------------------------------------------------------------------------------

    def read_many(self, rels: list[str]) -> dict[str, bytes]:
        """Several small objects at once (concurrently on a store)."""
        if not rels:
            return {}
        got = self.fs.cat([self.path(rel) for rel in rels], on_error="raise")
        return {rel: got[self.path(rel)] for rel in rels}

    def list(self, folder: str) -> list[str]:
        """Names of the files directly in `folder` (none if it does not exist)."""
        try:
            entries = self.fs.ls(self.path(folder), detail=True)
        except FileNotFoundError:
            return []
        return sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e["type"] == "file")

    def scratch_dir(self, name: str) -> Path:
        """A local working folder (e.g. downloads): inside a local location, else in the temporary folder."""
        if self.local:
            return Path(self.path(name))
        return Path(tempfile.gettempdir()) / "hallo-forge" / hashlib.sha1(self.url.encode()).hexdigest()[:12] / name


def read_bytes(location: str | os.PathLike) -> bytes:
    """The bytes of one file or object; FileNotFoundError (one line) if it is not there."""
    text = str(location)
    if not is_url(text):
        path = Path(text.removeprefix("file://"))
        if not path.is_file():
            raise FileNotFoundError(f"not found: {text}")
        return path.read_bytes()
    fs, path = _filesystem(text)
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"not found: {text}") from None
    except Exception as err:  # noqa: BLE001 - credentials, endpoint, permissions: one line for the user
        raise StorageError(f"cannot read {text}: {_one_line(err)}") from err


def expand_shards(patterns: list[str]) -> list[str]:
    """Brace patterns and globs to a sorted, de-duplicated shard list.

    Local globs and fsspec globs (`s3://bucket/curated/shards/*.tar`) are listed; other URLs (http,
    `pipe:`) and names without glob characters pass through unchanged.
    """
    shards: list[str] = []
    for pattern in patterns:
        for item in braceexpand.braceexpand(pattern):
            if item.startswith("pipe:") or not _GLOB_CHARS & set(item):
                shards.append(item)
            elif is_url(item) and not item.startswith(("http://", "https://")):
                fs, path = _filesystem(item)
                shards.extend([fs.unstrip_protocol(found) for found in fs.glob(path)] or [item])
            else:
                shards.extend(sorted(glob.glob(item.removeprefix("file://"))) or [item])
    return sorted(set(shards))


def file_exists(url: str) -> bool:
    """Whether a local file or an object exists (http(s) and `pipe:` sources cannot be asked: True)."""
    if url.startswith(("pipe:", "http://", "https://")):
        return True
    if not is_url(url):
        return Path(url.removeprefix("file://")).is_file()
    fs, path = _filesystem(url)
    try:
        return fs.isfile(path)
    except Exception as err:  # noqa: BLE001 - credentials, endpoint, permissions: one line for the user
        raise StorageError(f"cannot read {url}: {_one_line(err)}") from err


def open_read(url: str) -> IO[bytes]:
    """A local path, an fsspec URL (read ahead in large blocks) or anything webdataset's gopen opens."""
    if not is_url(url) or url.startswith(("http://", "https://", "pipe:")):
        from webdataset.gopen import gopen

        return gopen(url.removeprefix("file://"), "rb")
    fs, path = _filesystem(url)
    return fs.open(path, "rb", block_size=8 * 2**20, cache_type="readahead")


def cache_root() -> Path:
    """Where object-store folders are mirrored for reading: $HALLO_FORGE_CACHE, else ~/.cache/hallo-forge."""
    return Path(os.environ.get("HALLO_FORGE_CACHE") or Path.home() / ".cache" / "hallo-forge")


def local_folder(location: str | os.PathLike) -> Path:
    """A folder to read from disk: a local path as it is, an object URL mirrored into the cache first.

    Files already mirrored with the same size are kept, so a second call costs one listing. Each file
    arrives under a temporary name and is renamed, so processes mirroring the same folder at once
    (the ranks of one node) never see half a file.
    """
    text = str(location)
    if not is_url(text):
        return Path(text.removeprefix("file://"))
    fs, root = _filesystem(text)
    target = cache_root() / "objects" / hashlib.sha1(text.rstrip("/").encode()).hexdigest()[:16]
    try:
        found = fs.find(root, detail=True)
    except Exception as err:  # noqa: BLE001 - credentials, endpoint, permissions: one line for the user
        raise StorageError(f"cannot list {text}: {_one_line(err)}") from err
    if not found:
        raise FileNotFoundError(f"not found: {text} (no objects under it)")
    for path, entry in found.items():
        local = target / path[len(root.rstrip("/")) + 1:]
        if local.is_file() and local.stat().st_size == entry["size"]:
            continue
        local.parent.mkdir(parents=True, exist_ok=True)
        staged = local.with_name(f".{local.name}.{uuid.uuid4().hex}.tmp")
        fs.get_file(path, str(staged))
        os.replace(staged, local)
    log.info("mirrored %s (%d files) to %s", text, len(found), target)
    return target


def publish_folder(folder: Path, url: str, last: str) -> None:
    """Upload every file of `folder` under `url`, the index file `last` after all others, and remove
    objects the folder no longer has; each object appears whole (see the module docstring)."""
    location = Location(url)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    for rel in sorted(files, key=lambda name: name == last):
        location.upload(folder / rel, rel)
    try:
        present = [p[len(location.root.rstrip("/")) + 1:] for p in location.fs.find(location.root)]
    except FileNotFoundError:
        present = []
    location.delete(sorted(set(present) - set(files)))
