"""Undecodable packets in real media: skipped and zero-filled (noted in `detail`), `corrupt_media` only
past media.max_corrupt_share. The broken files are the real in_sync fixture with packets overwritten."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from curation import reasons
from curation.config import CurationConfig, MediaConfig
from curation.media import check_gaps, load_audio, probe
from curation.pipeline import process_source_safely
from curation.reasons import Rejected
from curation.sources import parse_source
from curation_expected import expected
from foundation.config import load_config


def zero_packets(src: Path, dst: Path, kind: str, indices: set[int]) -> list[tuple[float, float]]:
    """Copy `src` with the payload of the `kind` packets at `indices` zeroed (the AAC decoder refuses those);
    returns their (start, end) seconds."""
    spans = []
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        seen = 0
        for packet in inp.demux():
            if packet.dts is None:
                continue
            index = packet.stream.index
            if packet.stream.type == kind:
                if seen in indices:
                    broken = av.Packet(bytes(packet.size))
                    broken.pts, broken.dts, broken.duration = packet.pts, packet.dts, packet.duration
                    broken.time_base = packet.time_base
                    spans.append((float(packet.pts * packet.time_base), float((packet.pts + packet.duration) * packet.time_base)))
                    packet = broken
                seen += 1
            packet.stream = streams[index]
            out.mux(packet)
    return spans


@pytest.fixture(scope="module")
def in_sync(fixture_by_variant) -> Path:
    return fixture_by_variant["in_sync"].path


def test_one_bad_audio_packet_is_zero_filled_and_noted(in_sync: Path, tmp_path: Path) -> None:
    broken = tmp_path / "one_bad_packet.mp4"
    [(start, end)] = zero_packets(in_sync, broken, "audio", {40})
    cfg = MediaConfig()
    info, clean = probe(broken, cfg), probe(in_sync, cfg)
    audio, reference = load_audio(info, 16000), load_audio(clean, 16000)
    assert audio.shape == reference.shape
    gap = slice(int(round((start - info.video_start_s) * 16000)), int(round((end - info.video_start_s) * 16000)))
    assert gap.stop - gap.start == 1024 and not audio[gap].any() and np.abs(reference[gap]).max() > 0.01
    before = slice(0, gap.start)
    after = slice(gap.stop + 1024, None)  # the next AAC frame overlaps the lost one; the rest is the same decode
    assert np.array_equal(audio[before], reference[before]) and np.array_equal(audio[after], reference[after])
    assert info.gaps.note() == "1 undecodable audio packet(s) skipped, 0.064 s zero-filled"
    check_gaps(info, cfg)  # 1.3% of the source: kept


def test_past_the_share_the_source_is_corrupt_media(in_sync: Path, tmp_path: Path) -> None:
    broken = tmp_path / "many_bad_packets.mp4"
    zero_packets(in_sync, broken, "audio", set(range(20, 60, 2)))  # 20 packets, 1.28 s of 5 s
    info = probe(broken, MediaConfig())
    load_audio(info, 16000)
    with pytest.raises(Rejected) as err:
        check_gaps(info, MediaConfig())
    assert err.value.reason == reasons.CORRUPT_MEDIA
    assert err.value.detail == "20 undecodable audio packet(s), 25.6% of the source > media.max_corrupt_share=0.05"
    check_gaps(info, MediaConfig(max_corrupt_share=0.3))


def test_a_source_with_a_bad_packet_is_curated_with_a_note(fixture_by_variant, in_sync: Path, annotation_overrides,
                                                           tmp_path: Path) -> None:
    broken = tmp_path / "in_sync_bad_packet.mp4"
    zero_packets(in_sync, broken, "audio", {40})
    cfg = load_config(CurationConfig, None, annotation_overrides)
    rows = process_source_safely(parse_source(str(broken), tmp_path / "out"), tmp_path / "out", cfg)
    accepted = [r for r in rows if r.status == "accepted"]
    assert len(accepted) == expected(fixture_by_variant["in_sync"])[1]
    assert all(r.detail == "1 undecodable audio packet(s) skipped, 0.064 s zero-filled" for r in rows)
