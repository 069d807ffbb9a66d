"""Duplicate content: one video listed under two names must not enter the dataset twice.

Normalising the list (curation.sources) catches URL variants; what it cannot see is the same file
under two paths, a short link and its target, or one upload mirrored at two direct links. Each
source task therefore records content keys after its download: the SHA-256 of the media bytes,
and for URLs the site's own video id as yt-dlp reports it. Sources sharing a key are copies.

Tasks run in parallel and finish in any order, so the choice is made once every source of the run
is committed, by the driver, and depends on the list alone: the copy listed first is kept, each
later one is recorded as `duplicate` naming the kept source (its shards become orphans).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

_CHUNK = 4 * 2**20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def content_keys(path: Path, provenance: dict) -> list[str]:
    """The keys under which two sources count as the same content."""
    keys = [f"sha256:{file_sha256(path)}"]
    if provenance.get("extractor") and provenance.get("id"):
        keys.append(f"video:{str(provenance['extractor']).lower()}:{provenance['id']}")
    return keys


def find_duplicates(order: list[str], keys: dict[str, list[str]]) -> dict[str, str]:
    """{later source id: kept source id} for sources sharing a content key (directly or through others).

    `order` is the list order (the first listed copy is kept); sources missing from `keys` take no part.
    """
    parent = {sid: sid for sid in order if keys.get(sid)}

    def root(sid: str) -> str:
        while parent[sid] != sid:
            parent[sid] = parent[parent[sid]]
            sid = parent[sid]
        return sid

    rank = {sid: i for i, sid in enumerate(order)}
    owner: dict[str, str] = {}
    for sid in parent:
        for key in keys[sid]:
            other: Optional[str] = owner.setdefault(key, sid)
            if other != sid:
                a, b = root(sid), root(other)
                if a != b:  # the earlier-listed root stays the group's root
                    first, second = (a, b) if rank[a] < rank[b] else (b, a)
                    parent[second] = first
    return {sid: root(sid) for sid in parent if root(sid) != sid}
