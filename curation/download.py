"""Fetch one source to local disk with yt-dlp (URLs) or hand a local file through unchanged.

Every outcome is either a `Downloaded` or a `Rejected` with a stable reason, so the manifest can
record it. Only network-ish failures are retried; a 404 or an unsupported site fails at once.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import imageio_ffmpeg
import yt_dlp
from yt_dlp.networking.exceptions import HTTPError, TransportError
from yt_dlp.utils import ContentTooShortError, DownloadError, parse_bytes

from curation.config import DownloadConfig
from curation.reasons import DOWNLOAD_FAILED, TOO_LONG, UNSUPPORTED_SOURCE, Rejected
from curation.sources import Source

log = logging.getLogger(__name__)
# yt-dlp's own messages (it calls debug/info/warning/error on this object).
ytdl_log = logging.getLogger(__name__ + ".yt_dlp")

OUTPUT_STEM = "source"  # fixed name, so a re-run finds or replaces the same file
PROVENANCE_KEYS = ("title", "uploader", "license", "webpage_url", "duration", "extractor", "id", "upload_date")
_RETRYABLE_HTTP = frozenset({408, 425, 429})


@dataclass
class Downloaded:
    path: Path
    provenance: dict


def ydl_options(cfg: DownloadConfig, out_dir: Path) -> dict[str, Any]:
    """yt-dlp options for one source downloaded into `out_dir`."""
    h = cfg.max_height
    return {
        # Best stream within the height cap, always with audio; uncapped only if nothing fits.
        # `<=?` also accepts formats whose height is unknown (direct links, html5 <video>).
        "format": f"bv*[height<=?{h}]+ba/b[height<=?{h}]/bv*+ba/b",
        "merge_output_format": "mp4",
        "outtmpl": str(out_dir / f"{OUTPUT_STEM}.%(ext)s"),
        "ffmpeg_location": imageio_ffmpeg.get_ffmpeg_exe(),  # no system ffmpeg is assumed
        "noplaylist": True,
        "retries": cfg.retries,
        "fragment_retries": cfg.retries,
        "ratelimit": parse_bytes(cfg.rate_limit) if cfg.rate_limit else None,
        "sleep_interval": cfg.sleep_interval_s or None,
        "cookiefile": cfg.cookies_file,
        "proxy": cfg.proxy,
        "max_filesize": int(cfg.max_filesize_mb * 1024 * 1024),
        "socket_timeout": cfg.socket_timeout_s,
        "logger": ytdl_log,
        "quiet": True,
        "noprogress": True,
    }


def _is_transient(err: DownloadError) -> bool:
    """True for failures a later attempt may not repeat: connection trouble, 5xx, rate limits."""
    exc = err.exc_info[1] if err.exc_info else None
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, HTTPError):
            return exc.status >= 500 or exc.status in _RETRYABLE_HTTP
        if isinstance(exc, (TransportError, ContentTooShortError)):
            return True
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return False


def _first_line(err: Exception) -> str:
    line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return line.removeprefix("ERROR: ")[:300]


def _probe_duration(path: Path) -> float | None:
    """Container duration in seconds, for sources whose page does not state one (direct links)."""
    try:
        with av.open(str(path)) as container:
            return container.duration / av.time_base if container.duration else None
    except av.FFmpegError:
        return None  # an undecodable file is the probe stage's business, not the download's


def _check_duration(duration: float | None, cfg: DownloadConfig) -> None:
    if duration is not None and duration > cfg.max_duration_s:
        raise Rejected(TOO_LONG, f"{duration:.0f} s > max_duration_s={cfg.max_duration_s:g}")


def _fetch(url: str, out_dir: Path, cfg: DownloadConfig) -> tuple[Path, dict]:
    """One attempt: read the page, refuse it if too long, then download. Raises DownloadError."""
    with yt_dlp.YoutubeDL(ydl_options(cfg, out_dir)) as ydl:
        info = ydl.extract_info(url, download=False)
        if info.get("_type") == "playlist":
            raise Rejected(UNSUPPORTED_SOURCE, "the URL is a playlist; list its videos one per line")
        _check_duration(info.get("duration"), cfg)  # before a single media byte is fetched
        info = ydl.process_ie_result(info, download=True)
    paths = [Path(d["filepath"]) for d in info.get("requested_downloads") or [] if d.get("filepath")]
    path = next((p for p in paths if p.is_file()), None)
    if path is None:
        # yt-dlp skips a file over max_filesize with only a log line and writes nothing.
        raise Rejected(DOWNLOAD_FAILED, f"larger than max_filesize_mb={cfg.max_filesize_mb:g} MB (nothing written)")
    return path, info


def _download_url(source: Source, out_dir: Path, cfg: DownloadConfig) -> Downloaded:
    attempts = max(1, cfg.retries)
    for attempt in range(1, attempts + 1):
        # A fresh folder per attempt: partial files of a crashed or failed run are never resumed.
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        try:
            path, info = _fetch(source.normalized, out_dir, cfg)
            break
        except DownloadError as err:
            if attempt == attempts or not _is_transient(err):
                raise Rejected(DOWNLOAD_FAILED, _first_line(err)) from None
            delay = cfg.backoff_s * 2 ** (attempt - 1)
            log.warning("%s: attempt %d/%d failed (%s); retrying in %.1f s",
                        source.normalized, attempt, attempts, _first_line(err), delay)
            time.sleep(delay)
    provenance = {key: info.get(key) for key in PROVENANCE_KEYS}
    if provenance["duration"] is None:
        provenance["duration"] = _probe_duration(path)
        _check_duration(provenance["duration"], cfg)
    provenance["url"] = source.raw
    return Downloaded(path=path, provenance=provenance)


def download(source: Source, work_dir: Path, cfg: DownloadConfig) -> Downloaded:
    """Local files pass through in place; URLs land in `work_dir/<source_id>/source.<ext>`."""
    if source.kind == "local":
        path = Path(source.normalized)
        if not path.is_file():
            raise Rejected(UNSUPPORTED_SOURCE, f"no such file: {path}")
        return Downloaded(path=path, provenance={"local_path": str(path), "size_bytes": path.stat().st_size})
    out_dir = Path(work_dir) / source.source_id
    try:
        return _download_url(source, out_dir, cfg)
    except Rejected:
        shutil.rmtree(out_dir, ignore_errors=True)  # a rejected source leaves nothing behind
        raise
