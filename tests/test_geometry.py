"""Frames as a player shows them: display-matrix rotation and anamorphic (non-square) pixels.

The fixtures are copies of one real talking clip (examples.fixtures) whose video is re-encoded so
that a player shows the original: the frames stored turned the other way, with a display matrix
that turns them back (PyAV's `set_display_rotation`, documented counter-clockwise as ffmpeg's
av_display_rotation_get reads it), or squeezed to 3/4 of the width and stored with a 4:3 sample
aspect ratio. The audio packets are copied. Curating a copy must give what the plain clip gives.
"""
from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import webdataset as wds

from examples import fixtures
from curation.config import CurationConfig, MediaConfig
from curation.media import iter_frames, probe
from curation.pipeline import process_source
from curation.sources import parse_source
from foundation.config import load_config
from foundation.media_io import read_video

SIZE = (640, 480)
# name -> (counter-clockwise display rotation, stored squeezed with SAR 4:3)
COPIES = {"rot_m90": (-90, False), "rot_p90": (90, False), "rot_180": (180, False), "anamorphic": (0, True)}
# Measured on every frame: the copies' display frames are 40.7-44.0 dB from the plain clip's (the
# re-encode, the chroma grid of the turned frames, the squeeze and stretch; a frame turned the wrong
# way is at 9.8 dB); their stored crops, whose boxes move by a pixel with the detections, 28.6-31.9 dB.
MIN_FRAME_PSNR_DB = 36.0
MIN_CROP_PSNR_DB = 25.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-12))


def rewrite(src: Path, dst: Path, rotation: int, anamorphic: bool) -> Path:
    """`src` with its video stored so that a player shows it unchanged (see the module docstring)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        vin, ain = inp.streams.video[0], inp.streams.audio[0]
        vout = out.add_stream("libx264", rate=vin.average_rate)
        width, height = vin.codec_context.width, vin.codec_context.height
        if anamorphic:
            width = width * 3 // 4
            vout.codec_context.sample_aspect_ratio = Fraction(4, 3)
        vout.width, vout.height = (height, width) if rotation % 180 else (width, height)
        vout.pix_fmt = "yuv420p"
        vout.options = {"crf": "10", "preset": "veryfast"}
        if rotation:
            vout.set_display_rotation(rotation)
        aout = out.add_stream_from_template(ain)
        for packet in inp.demux(vin, ain):
            if packet.stream is ain:
                if packet.dts is not None:
                    packet.stream = aout
                    out.mux(packet)
                continue
            for frame in packet.decode():
                rgb = frame.to_ndarray(format="rgb24")
                rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA) if anamorphic else rgb
                stored = np.ascontiguousarray(np.rot90(rgb, -rotation // 90))  # the display turn undoes it
                out.mux(vout.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")))
        out.mux(vout.encode())
    return dst


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("geometry")
    plain = fixtures.generate("in_sync", folder / "plain.mp4", duration_s=3.0, size=SIZE).path
    return {"plain": plain, **{name: rewrite(plain, folder / f"{name}.mp4", rot, ana)
                               for name, (rot, ana) in COPIES.items()}}


@pytest.mark.parametrize("name", list(COPIES))
def test_probe_gives_display_size_and_source_geometry(clips, name):
    rotation, anamorphic = COPIES[name]
    info = probe(clips[name], MediaConfig())
    assert (info.width, info.height) == SIZE
    stored = (480, 480) if anamorphic else (480, 640) if rotation % 180 else SIZE
    assert (info.geometry.width, info.geometry.height) == stored
    assert info.geometry.rotation_deg == rotation % 360
    assert info.geometry.sample_aspect == pytest.approx(4 / 3 if anamorphic else 1.0)
    assert info.geometry_columns()["display_width"] == 640


@pytest.mark.parametrize("name", list(COPIES))
def test_analysis_and_full_frames_are_upright_with_square_pixels(clips, name):
    plain_info, info = probe(clips["plain"], MediaConfig()), probe(clips[name], MediaConfig())
    for short_side in (360, None):
        want = dict(iter_frames(plain_info, 30, 35, short_side=short_side))
        got = dict(iter_frames(info, 30, 35, short_side=short_side))
        assert got.keys() == want.keys()
        for index, frame in got.items():
            assert frame.shape == want[index].shape == ((360, 480, 3) if short_side else (480, 640, 3))
            assert psnr(frame, want[index]) > MIN_FRAME_PSNR_DB, (name, short_side, index)
            # a wrong turn or a missing stretch would compare the face with something else
            assert psnr(frame, np.rot90(want[index], 2)) < 25


@pytest.mark.parametrize("name", ["rot_m90", "anamorphic"])
def test_read_video_shows_frames_as_a_player_does(clips, name):
    plain, got = read_video(clips["plain"], 25), read_video(clips[name], 25)
    assert got.shape == plain.shape == (75, 480, 640, 3)
    assert min(psnr(a, b) for a, b in zip(got[::10], plain[::10])) > MIN_FRAME_PSNR_DB


def _curate(path: Path, out: Path, cfg: CurationConfig) -> tuple[list, dict[str, np.ndarray]]:
    rows = process_source(parse_source(str(path), out), out, cfg)
    crops = {}
    for sample in wds.WebDataset(sorted(str(p) for p in (out / "shards").glob("*.tar")), shardshuffle=False):
        with av.open(io.BytesIO(sample["mp4"])) as video:
            crops[sample["__key__"]] = np.stack([f.to_ndarray(format="rgb24") for f in video.decode(video=0)])
    return rows, crops


def test_rotated_and_anamorphic_copies_curate_like_the_plain_clip(clips, tmp_path):
    cfg = load_config(CurationConfig, None, ["annotations.enabled=false", "sync.backend=envelope"])
    plain_rows, plain_crops = _curate(clips["plain"], tmp_path / "plain", cfg)
    assert [r.status for r in plain_rows] == ["accepted"]
    for name, (rotation, anamorphic) in COPIES.items():
        rows, crops = _curate(clips[name], tmp_path / name, cfg)
        assert [(r.status, r.reason) for r in rows] == [(r.status, r.reason) for r in plain_rows], name
        for row, want in zip(rows, plain_rows):
            assert abs(row.start_s - want.start_s) <= 1 / 25 and abs(row.end_s - want.end_s) <= 1 / 25
            assert (row.display_width, row.display_height, row.rotation_deg) == (640, 480, rotation % 360)
            assert row.sample_aspect == pytest.approx(4 / 3 if anamorphic else 1.0)
            assert abs(row.face_px - want.face_px) < 0.03 * want.face_px
        (got,), (ref,) = crops.values(), plain_crops.values()
        frames = min(len(got), len(ref))
        assert got.shape[1:] == ref.shape[1:] == (512, 512, 3)
        worst = min(psnr(a, b) for a, b in zip(got[:frames:5], ref[:frames:5]))
        assert worst > MIN_CROP_PSNR_DB, (name, worst)
