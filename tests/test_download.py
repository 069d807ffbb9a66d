"""Download stage against a local HTTP server (never the internet)."""
from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import av
import pytest

from curation.config import DownloadConfig
from curation.download import download, ydl_options
from curation.reasons import DOWNLOAD_FAILED, TOO_LONG, Rejected
from curation.sources import parse_source

from clipmaker import make_clip

FPS, SECONDS = 10, 1.0


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; records every request path; answers 503 for paths containing 'busy'."""

    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        if "busy" in self.path:
            self.send_error(503)
            return
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(base URL, list of request paths) of a server on 127.0.0.1 serving a clip and a page."""
    root = tmp_path_factory.mktemp("site")
    make_clip(root / "clip.mp4")
    (root / "talk.html").write_text(
        "<html><head><title>Talk</title></head><body><video src='clip.mp4' controls></video></body></html>")
    requests: list[str] = []
    handler = functools.partial(type("H", (_Handler,), {"requests": requests}), directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    thread.join()


def fast_cfg(**overrides) -> DownloadConfig:
    return DownloadConfig(**{"retries": 3, "backoff_s": 0.001, "socket_timeout_s": 5.0, **overrides})


def fetch(url: str, work_dir: Path, cfg: DownloadConfig):
    return download(parse_source(url, work_dir), work_dir, cfg)


def decoded_frames(path: Path) -> tuple[int, bool]:
    with av.open(str(path)) as container:
        has_audio = bool(container.streams.audio)
        return sum(1 for _ in container.decode(video=0)), has_audio


def test_direct_mp4_downloads_with_provenance(site, tmp_path):
    base, _ = site
    got = fetch(f"{base}/clip.mp4?utm_source=x", tmp_path, fast_cfg())
    source = parse_source(f"{base}/clip.mp4", tmp_path)
    assert got.path == tmp_path / source.source_id / "source.mp4"
    assert got.provenance["webpage_url"] == f"{base}/clip.mp4"
    assert got.provenance["url"] == f"{base}/clip.mp4?utm_source=x"
    assert got.provenance["title"] == "clip"
    assert got.provenance["extractor"] == "generic"
    assert got.provenance["duration"] == pytest.approx(SECONDS, abs=0.1)
    assert decoded_frames(got.path) == (int(SECONDS * FPS), True)


def test_html5_video_page_downloads(site, tmp_path):
    base, _ = site
    got = fetch(f"{base}/talk.html", tmp_path, fast_cfg())
    assert got.provenance["title"].startswith("Talk")
    assert got.provenance["webpage_url"] == f"{base}/talk.html"
    assert decoded_frames(got.path) == (int(SECONDS * FPS), True)


def test_not_found_fails_without_retry(site, tmp_path):
    base, requests = site
    requests.clear()
    with pytest.raises(Rejected) as err:
        fetch(f"{base}/missing.mp4", tmp_path, fast_cfg(retries=3))
    assert err.value.reason == DOWNLOAD_FAILED
    assert "404" in err.value.detail
    assert requests == ["/missing.mp4"]  # deterministic: one attempt only
    assert not any(tmp_path.iterdir())  # nothing left behind


def test_server_error_is_retried_then_fails(site, tmp_path):
    base, requests = site
    requests.clear()
    with pytest.raises(Rejected) as err:
        fetch(f"{base}/busy.mp4", tmp_path, fast_cfg(retries=3))
    assert err.value.reason == DOWNLOAD_FAILED
    assert "503" in err.value.detail
    assert requests == ["/busy.mp4"] * 3


def test_too_long_is_rejected(site, tmp_path):
    base, _ = site
    with pytest.raises(Rejected) as err:
        fetch(f"{base}/clip.mp4", tmp_path, fast_cfg(max_duration_s=0.5))
    assert err.value.reason == TOO_LONG
    assert not any(tmp_path.iterdir())


def test_too_large_is_rejected(site, tmp_path):
    base, _ = site
    with pytest.raises(Rejected) as err:
        fetch(f"{base}/clip.mp4", tmp_path, fast_cfg(max_filesize_mb=0.001))
    assert err.value.reason == DOWNLOAD_FAILED
    assert "larger than" in err.value.detail


def test_rerun_replaces_partial_folder(site, tmp_path):
    base, _ = site
    source = parse_source(f"{base}/clip.mp4", tmp_path)
    stale = tmp_path / source.source_id
    stale.mkdir()
    (stale / "source.mp4.part").write_bytes(b"half a file")
    got = download(source, tmp_path, fast_cfg())
    assert sorted(p.name for p in stale.iterdir()) == ["source.mp4"]
    assert decoded_frames(got.path)[0] == int(SECONDS * FPS)


def test_local_file_passes_through(tmp_path):
    clip = tmp_path / "local.mp4"
    make_clip(clip)
    got = download(parse_source("local.mp4", tmp_path), tmp_path / "work", fast_cfg())
    assert got.path == clip.resolve()
    assert got.provenance == {"local_path": str(clip.resolve()), "size_bytes": clip.stat().st_size}
    assert not (tmp_path / "work").exists()


def test_options_use_every_config_field(tmp_path):
    cfg = DownloadConfig(max_height=480, retries=5, rate_limit="2M", sleep_interval_s=1.5,
                         cookies_file="/c.txt", proxy="socks5://127.0.0.1:1080",
                         max_filesize_mb=10, socket_timeout_s=7)
    opts = ydl_options(cfg, tmp_path)
    assert "[height<=?480]" in opts["format"] and "+ba" in opts["format"]
    assert opts["outtmpl"] == str(tmp_path / "source.%(ext)s")
    assert Path(opts["ffmpeg_location"]).is_file()
    assert (opts["retries"], opts["ratelimit"], opts["sleep_interval"]) == (5, 2 * 1024 * 1024, 1.5)
    assert (opts["cookiefile"], opts["proxy"]) == ("/c.txt", "socks5://127.0.0.1:1080")
    assert (opts["max_filesize"], opts["socket_timeout"]) == (10 * 1024 * 1024, 7)
    assert opts["merge_output_format"] == "mp4"
