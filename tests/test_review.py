"""The review page: previews captured during curation, the page finalize_output writes, opened in a real headless
chromium (every image loads, every reason of the manifest has its section), and the on-demand CLI into S3."""
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest

from curation.clips import clip_id
from curation.config import CurationConfig
from curation.manifest import ManifestRow
from curation.pipeline import process_source_safely
from curation.previews import PREVIEW_DIR, pick_rows, preview_source
from curation.review import REVIEW_PAGE, main as review_main
from curation.run_output import finalize_output
from curation.sources import parse_source
from foundation.config import load_config
from foundation.storage import Location

VARIANTS = ("in_sync", "two_faces", "no_face", "no_audio")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Appended to a copy of the page beside it (same relative links): once every image has loaded or
# failed (the load event), the page's state is written into the DOM that --dump-dom prints.
CHECK_SCRIPT = """<script>
window.addEventListener("load", () => {
  const state = {
    images: [...document.images].map(i => ({src: i.getAttribute("src"), width: i.complete ? i.naturalWidth : 0})),
    sections: [...document.querySelectorAll("section")].map(s => ({
      id: s.id, images: s.querySelectorAll("img").length, rows: s.querySelectorAll("tr[id]").length})),
    links: [...document.querySelectorAll("figcaption a[href^='#']")].map(a => ({
      href: a.getAttribute("href"), found: document.getElementById(a.getAttribute("href").slice(1)) !== null})),
  };
  const out = document.createElement("pre");
  out.id = "review-check";
  out.textContent = JSON.stringify(state);
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI (.ci/run installs it)")
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium); .ci/run installs it in CI")
    return found


def browser_state(page: Path, profile: Path) -> dict:
    """What a real browser sees of `page`: each image's natural width, each section, each card's row link."""
    check = page.with_name("_check.html")
    check.write_text(page.read_text().replace("</body>", CHECK_SCRIPT + "</body>"))
    result = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000",
                             "--dump-dom", check.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="review-check">(.*?)</pre>', result.stdout, re.S)
    assert found, f"no result in chromium's DOM (exit {result.returncode}): {result.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


@pytest.fixture(scope="module")
def curated(fixture_by_variant, tmp_path_factory) -> Path:
    """Four fixture sources curated in process (accepted, multiple_faces, no_face, no_audio), one preview per
    clip, plus leftovers of earlier attempts in previews/; then settled."""
    out = tmp_path_factory.mktemp("review_out")
    cfg = load_config(CurationConfig, None, ["annotations.enabled=false", "review.preview_every=1"])
    sources = [parse_source(str(fixture_by_variant[v].path), None) for v in VARIANTS]
    for source in sources:
        process_source_safely(source, out, cfg)
    stale = out / PREVIEW_DIR / f"{clip_id(sources[0].source_id, 3, 60)}.jpg"  # a superseded attempt's clip
    stale.write_bytes(b"old")
    (out / PREVIEW_DIR / f".{stale.name}.0123abcd.tmp").write_bytes(b"half")  # a killed attempt's staging file
    (out / PREVIEW_DIR / f"{clip_id('c' * 16, 0, 50)}.jpg").write_bytes(b"another list's source: left alone")
    finalize_output(Location(out), sources, cfg, [], 1.0)
    return out


def manifest(out: Path) -> list[dict]:
    return pq.read_table(out / "manifest.parquet").to_pylist()


def test_every_reason_has_its_section_and_every_image_loads_in_a_real_browser(curated, tmp_path) -> None:
    state = browser_state(curated / REVIEW_PAGE, tmp_path / "profile")
    rows = manifest(curated)
    sections = {s["id"]: s for s in state["sections"]}
    assert set(sections) == {f"section-{r['reason'] or 'accepted'}" for r in rows}
    assert {"section-accepted", "section-multiple_faces", "section-no_face", "section-no_audio"} <= set(sections)
    assert state["images"] and all(image["width"] > 0 for image in state["images"]), state["images"]
    previews = {f"../{PREVIEW_DIR}/{r['clip_id']}.jpg" for r in rows if r["clip_id"]}
    assert {i["src"] for i in state["images"]} == previews | {"../funnel.png"}  # preview_every=1: every clip
    assert state["links"] and all(link["found"] for link in state["links"])
    assert len(state["links"]) == len(previews)
    no_audio = sections["section-no_audio"]  # rejected before any frame was decoded: a row, no image
    assert no_audio["images"] == 0 and no_audio["rows"] == 1
    assert sum(s["rows"] for s in sections.values()) == len(rows)


def _pixels_near(image: np.ndarray, rgb: tuple[int, int, int]) -> int:
    return int((np.abs(image.astype(int) - rgb).max(axis=2) < 40).sum())


def test_previews_are_strips_of_the_clip_with_its_face_boxes(curated) -> None:
    by_reason = {r["reason"]: r["clip_id"] for r in manifest(curated)}
    strips = {reason: cv2.cvtColor(cv2.imread(str(curated / PREVIEW_DIR / f"{cid}.jpg")), cv2.COLOR_BGR2RGB)
              for reason, cid in by_reason.items() if cid}
    height, width = strips[None].shape[:2]
    assert height == 144 and width > 4 * 144  # four 4:3 frames side by side at the default short side
    green, amber = (40, 220, 90), (255, 170, 0)
    assert _pixels_near(strips[None], green) > 200 and _pixels_near(strips[None], amber) < 20
    assert _pixels_near(strips["multiple_faces"], green) > 200 and _pixels_near(strips["multiple_faces"], amber) > 200
    assert "no_face" in by_reason and by_reason["no_face"] is None  # the coffee cup: rejected by the face probe
    # before any analysis (curation.screen), so a source row and no strip


def test_settle_deletes_previews_no_committed_row_names(curated) -> None:
    names = sorted(p.name for p in (curated / PREVIEW_DIR).iterdir())
    ids = {r["clip_id"] for r in manifest(curated) if r["clip_id"]}
    assert names == sorted([f"{cid}.jpg" for cid in ids] + [f"{clip_id('c' * 16, 0, 50)}.jpg"])
    assert {preview_source(n) for n in names} == {r["source_id"] for r in manifest(curated) if r["clip_id"]} | {"c" * 16}
    summary = json.loads((curated / "summary.json").read_text())
    assert summary["stage_seconds"]["previews"] < summary["stage_seconds"]["decode_analysis"]


def test_a_preview_for_the_first_and_every_nth_clip_of_each_reason() -> None:
    rows = [ManifestRow(source="s", source_id="s", status="x", clip_id=f"c{i}", reason=reason, start_s=i, end_s=i + 1)
            for i, reason in enumerate([None, "blurry", None, "blurry", None, None, "blurry"])]
    rows.append(ManifestRow(source="s", source_id="s", status="rejected", reason="no_audio"))
    assert [r.clip_id for r in pick_rows(rows, 2)] == ["c0", "c1", "c4", "c6"]
    assert [r.clip_id for r in pick_rows(rows, 1)] == [f"c{i}" for i in range(7)]


def test_the_cli_writes_the_page_into_an_object_store(curated, s3_bucket, capsys) -> None:
    prefix = f"{s3_bucket}/curated"
    fs = fsspec.filesystem("s3", use_listings_cache=False)
    for name in ["manifest.parquet", "summary.json", "funnel.png"]:
        fs.put_file(str(curated / name), f"{prefix}/{name}")
    for path in (curated / PREVIEW_DIR).iterdir():
        fs.put_file(str(path), f"{prefix}/{PREVIEW_DIR}/{path.name}")
    assert review_main(["--out", prefix, "--set", "review.page_clips=1"]) == 0
    assert capsys.readouterr().out.strip() == f"{prefix}/{REVIEW_PAGE}"
    page = fs.cat_file(f"{prefix}/{REVIEW_PAGE}").decode()
    sources = re.findall(r'<img [^>]*src="\.\./([^"]+)"', page)
    assert "funnel.png" in sources and len(sources) == 1 + 2  # one card in each of the two sections with clips
    # (accepted, multiple_faces; no_face and no_audio sources are rejected before the analysis)
    assert all(fs.isfile(f"{prefix}/{src}") for src in sources)

    assert review_main(["--out", f"{s3_bucket}/empty"]) == 2
    assert "holds no manifest.parquet" in capsys.readouterr().err
