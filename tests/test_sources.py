"""Source list parsing and URL normalisation."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from curation.reasons import UNSUPPORTED_SOURCE
from curation.sources import normalize_url, parse_source, parse_source_list

YT = "https://www.youtube.com/watch?v=dQw4w9WgXcQ"
BILI = "https://www.bilibili.com/video/BV1xx411c7mD"


@pytest.mark.parametrize("url", [
    "https://youtu.be/dQw4w9WgXcQ?si=AbCdEf",
    "https://www.youtube.com/shorts/dQw4w9WgXcQ",
    "https://M.YouTube.com/watch?v=dQw4w9WgXcQ&feature=share&list=PL1&t=42s",
    "http://youtube.com/watch?v=dQw4w9WgXcQ#comments",
    "https://www.youtube.com/embed/dQw4w9WgXcQ",
])
def test_youtube_variants_collapse(url):
    assert normalize_url(url) == YT


@pytest.mark.parametrize("url, expected", [
    ("https://www.bilibili.com/video/BV1xx411c7mD/?p=1&spm_id_from=333.999", BILI),
    ("https://m.bilibili.com/video/BV1xx411c7mD?vd_source=abc", BILI),
    ("https://bilibili.com/video/BV1xx411c7mD/", BILI),
    ("https://www.bilibili.com/video/BV1xx411c7mD?p=3", BILI + "?p=3"),
    ("https://www.bilibili.com/video/av170001/", "https://www.bilibili.com/video/av170001"),
    ("https://b23.tv/xYz12?share_source=copy_web", "https://b23.tv/xYz12"),
])
def test_bilibili_variants(url, expected):
    assert normalize_url(url) == expected


def test_generic_url_keeps_meaningful_query():
    url = "HTTPS://Example.COM:443/v/talk.mp4?token=a%2Fb&utm_source=x&utm_medium=y&fbclid=z#t=3"
    assert normalize_url(url) == "https://example.com/v/talk.mp4?token=a%2Fb"
    assert normalize_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/"


def test_bare_bilibili_ids(tmp_path):
    assert parse_source("BV1xx411c7mD", tmp_path).normalized == BILI
    assert parse_source("av170001", tmp_path).normalized == "https://www.bilibili.com/video/av170001"


def test_source_id_is_stable_and_key_safe(tmp_path):
    a = parse_source("https://youtu.be/dQw4w9WgXcQ", tmp_path)
    b = parse_source(YT + "&utm_campaign=x", tmp_path)
    assert a.source_id == b.source_id
    assert re.fullmatch(r"[0-9a-f]{16}", a.source_id)
    assert parse_source(BILI, tmp_path).source_id != a.source_id


def test_parse_list(tmp_path, caplog):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "talk.mp4").write_bytes(b"x")
    (tmp_path / "list.txt").write_text("\n".join([
        "# talks to curate",
        "",
        "https://youtu.be/dQw4w9WgXcQ?si=abc   # shared from phone",
        "   https://m.youtube.com/watch?v=dQw4w9WgXcQ",
        "https://www.bilibili.com/video/BV1xx411c7mD/?p=1",
        "BV1xx411c7mD",
        "https://www.bilibili.com/video/BV1xx411c7mD?p=2",
        "videos/talk.mp4",
        f"{videos / 'talk.mp4'}",
        f"file://{videos / 'talk.mp4'}",
        "ftp://example.com/a.mp4",
        "videos/missing.mp4",
        "http:///nohost",
        "https://example.com/page#section",
    ]) + "\n")
    with caplog.at_level(logging.INFO, logger="curation.sources"):
        sources, rejected = parse_source_list(tmp_path / "list.txt")
    assert [(s.normalized, s.kind) for s in sources] == [
        (YT, "url"),
        (BILI, "url"),
        (BILI + "?p=2", "url"),
        (str((videos / "talk.mp4").resolve()), "local"),
        ("https://example.com/page", "url"),
    ]
    assert sources[0].raw == "https://youtu.be/dQw4w9WgXcQ?si=abc"  # trailing comment removed
    assert sources[3].raw == "videos/talk.mp4"  # first of the duplicates wins
    assert [raw for raw, _ in rejected] == ["ftp://example.com/a.mp4", "videos/missing.mp4", "http:///nohost"]
    assert {err.reason for _, err in rejected} == {UNSUPPORTED_SOURCE}
    assert "missing.mp4" in rejected[1][1].detail
    assert sum("duplicates" in r.getMessage() for r in caplog.records) == 4


def test_relative_paths_follow_the_list_folder(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.mp4").write_bytes(b"x")
    (tmp_path / "sub" / "list.txt").write_text("a.mp4\n")
    monkeypatch.chdir(tmp_path)  # the working folder must not matter
    sources, rejected = parse_source_list(Path("sub/list.txt"))
    assert [s.normalized for s in sources] == [str((tmp_path / "sub" / "a.mp4").resolve())]
    assert rejected == []


def test_missing_list_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="source list not found"):
        parse_source_list(tmp_path / "nope.txt")
