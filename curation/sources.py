"""The source list: one URL or local video file per line, normalised so duplicates collapse.

Normalisation matters because the same video appears under many URLs (share links with tracking
parameters, mobile hosts, short links); `source_id` is derived from the normalised form, so it is
what makes re-runs resume and what keys every output of a source.
"""
from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from curation.reasons import UNSUPPORTED_SOURCE, Rejected
from foundation.storage import is_url, read_bytes

log = logging.getLogger(__name__)

# Query keys that only say who shared a link or from where; they never change the video.
_TRACKING_KEYS = frozenset({
    "spm_id_from", "vd_source", "si", "feature", "fbclid", "gclid", "igshid", "share_source",
    "share_medium", "share_plat", "share_session_id", "share_tag", "share_from", "from_spmid",
    "unique_k", "bbid", "is_story_h5", "from_source",
})
_TRACKING_PREFIXES = ("utm_",)

_YOUTUBE_HOSTS = frozenset({"youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com"})
_YOUTUBE_PATH_ID = re.compile(r"^/(?:shorts|embed|live|v)/([A-Za-z0-9_-]{11})/?$")
_YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
_BILIBILI_HOSTS = frozenset({"bilibili.com", "www.bilibili.com", "m.bilibili.com"})
_BILIBILI_PATH = re.compile(r"^/video/(BV[0-9A-Za-z]{10}|av\d+)/?$", re.IGNORECASE)
_BILIBILI_BARE = re.compile(r"^(BV[0-9A-Za-z]{10}|av\d+)$")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# A trailing comment needs whitespace before '#', so URL fragments survive.
_TRAILING_COMMENT = re.compile(r"\s+#.*$")


@dataclass(frozen=True)
class Source:
    raw: str
    normalized: str
    source_id: str
    kind: Literal["url", "local"]


def source_id_of(normalized: str) -> str:
    """Stable 16-hex-digit id: safe as a file name and as a WebDataset key prefix (no dots)."""
    return hashlib.sha1(normalized.encode("utf-8")).hexdigest()[:16]


def _bilibili_video_id(raw_id: str) -> str:
    # BV ids are case-sensitive after the prefix; av ids are numbers.
    return "BV" + raw_id[2:] if raw_id[:2].upper() == "BV" else "av" + raw_id[2:]


def _bilibili_url(video_id: str, page: str | None) -> str:
    url = f"https://www.bilibili.com/video/{_bilibili_video_id(video_id)}"
    # Pages of a multi-part upload are different videos; page 1 is the video itself.
    if page and page.isdigit() and int(page) > 1:
        url += f"?p={int(page)}"
    return url


def _canonical_site_url(host: str, path: str, query: list[tuple[str, str]]) -> str | None:
    """The canonical URL of a YouTube or Bilibili video, or None for any other page."""
    params = dict(query)
    if host == "youtu.be":
        video_id = path.strip("/")
        if _YOUTUBE_ID.match(video_id):
            return f"https://www.youtube.com/watch?v={video_id}"
    if host in _YOUTUBE_HOSTS:
        match = _YOUTUBE_PATH_ID.match(path)
        video_id = match.group(1) if match else params.get("v", "") if path.rstrip("/") == "/watch" else ""
        if _YOUTUBE_ID.match(video_id):
            return f"https://www.youtube.com/watch?v={video_id}"
    if host in _BILIBILI_HOSTS:
        match = _BILIBILI_PATH.match(path)
        if match:
            return _bilibili_url(match.group(1), params.get("p"))
    return None


def _is_tracking(key: str) -> bool:
    return key in _TRACKING_KEYS or key.startswith(_TRACKING_PREFIXES)


def normalize_url(url: str) -> str:
    """Canonical form of an http(s) URL: see the module docstring. Raises Rejected if malformed."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise Rejected(UNSUPPORTED_SOURCE, f"unsupported URL scheme {scheme!r}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as err:  # a non-numeric port
        raise Rejected(UNSUPPORTED_SOURCE, f"malformed URL: {err}") from None
    if not host:
        raise Rejected(UNSUPPORTED_SOURCE, "URL has no host")
    canonical = _canonical_site_url(host, parts.path, parse_qsl(parts.query, keep_blank_values=True))
    if canonical:
        return canonical
    # Filter the raw pairs rather than re-encode them, so the URL stays byte-identical otherwise.
    query = "&".join(
        pair for pair in parts.query.split("&")
        if pair and not _is_tracking(unquote(pair.split("=", 1)[0]))
    )
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    if "@" in parts.netloc:
        netloc = parts.netloc.rsplit("@", 1)[0] + "@" + netloc
    return urlunsplit((scheme, netloc, parts.path or "/", query, ""))


def _normalize_local(path: Path) -> str:
    path = path.expanduser().resolve()
    if not path.is_file():
        raise Rejected(UNSUPPORTED_SOURCE, f"no such file: {path}")
    return str(path)


def parse_source(entry: str, base_dir: Optional[Path]) -> Source:
    """One list entry -> Source; relative paths are relative to `base_dir` (None: a list that is not a
    local file, where they mean nothing). Raises Rejected."""
    entry = entry.strip()
    if _BILIBILI_BARE.match(entry):
        normalized, kind = _bilibili_url(entry, None), "url"
    elif entry.lower().startswith("file://"):
        normalized, kind = _normalize_local(Path(unquote(urlsplit(entry).path))), "local"
    elif "://" in entry:
        normalized, kind = normalize_url(entry), "url"
    elif base_dir is None and not Path(entry).expanduser().is_absolute():
        raise Rejected(UNSUPPORTED_SOURCE, "a relative path in a list that is not a local file: give an absolute path")
    else:
        normalized, kind = _normalize_local((base_dir or Path("/")) / Path(entry).expanduser()), "local"
    return Source(raw=entry, normalized=normalized, source_id=source_id_of(normalized), kind=kind)


class SourceListError(ValueError):
    """A source list that cannot be read as text; the message names the line."""


def _list_lines(data: bytes, name: str) -> list[str]:
    try:
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - data.rfind(b"\n", 0, err.start)
        raise SourceListError(f"source list {name}: line {line} is not UTF-8 (byte 0x{data[err.start]:02x} at "
                              f"column {column}); save the list as UTF-8") from None


def parse_source_list(location: str | Path) -> tuple[list[Source], list[tuple[str, Rejected]]]:
    """Read a source list (a local file or an object URL). Returns the unique sources in file order, and the
    rejected entries. FileNotFoundError, StorageError or SourceListError (one line each) if it cannot be read."""
    name = str(location)
    try:
        data = read_bytes(name)
    except FileNotFoundError:
        raise FileNotFoundError(f"source list not found: {name}") from None
    base_dir = None if is_url(name) else Path(name.removeprefix("file://")).resolve().parent
    sources: list[Source] = []
    rejected: list[tuple[str, Rejected]] = []
    seen: dict[str, int] = {}
    for line_no, line in enumerate(_list_lines(data, name), start=1):
        entry = _TRAILING_COMMENT.sub("", line).strip()
        if not entry or entry.startswith("#"):
            continue
        try:
            source = parse_source(entry, base_dir)
        except Rejected as err:
            log.warning("%s:%d: rejected %r: %s", name, line_no, entry, err.detail)
            rejected.append((entry, err))
            continue
        if source.normalized in seen:
            log.info("%s:%d: %r duplicates line %d (%s); dropped", name, line_no, entry,
                     seen[source.normalized], source.normalized)
            continue
        seen[source.normalized] = line_no
        sources.append(source)
    return sources, rejected
