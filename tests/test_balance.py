"""Balance of the accepted clips: the pose and mouth ranges in summary.json and the funnel figure."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from curation.manifest import BALANCE_BINS, ManifestRow, plot_funnel, summarize


def _row(i: int, status: str, **columns) -> ManifestRow:
    return ManifestRow(source=f"s{i}.mp4", source_id=f"s{i}", status=status, clip_id=f"s{i}_0", start_s=0.0,
                       end_s=4.0, source_duration_s=10.0, reason=None if status == "accepted" else "blurry", **columns)


def test_summary_and_figure_hold_the_accepted_clips_distributions():
    yaw = [2.0, 7.0, 12.0, 30.0, 95.0]  # 95 lies past the last bin: it counts there
    rows = [_row(i, "accepted", yaw_range_deg=v, pitch_range_deg=1.0, roll_range_deg=None, mouth_open_range=0.1 * i)
            for i, v in enumerate(yaw)]
    rows.append(_row(9, "rejected", yaw_range_deg=40.0, mouth_open_range=0.5))  # not accepted: not counted
    balance = summarize(rows, 1.0)["balance"]
    assert set(balance) == set(BALANCE_BINS)
    assert balance["yaw_range_deg"]["clips"] == 5
    assert balance["yaw_range_deg"]["p50"] == pytest.approx(12.0)
    assert balance["yaw_range_deg"]["p95"] == pytest.approx(np.percentile(yaw, 95))
    counts = balance["yaw_range_deg"]["histogram"]["counts"]
    assert sum(counts) == 5 and counts[0] == 1 and counts[-1] == 1  # [0, 5) holds 2.0, [55, 60] the 95
    assert balance["mouth_open_range"]["p95"] == pytest.approx(np.percentile([0, 0.1, 0.2, 0.3, 0.4], 95))
    assert balance["roll_range_deg"] == {"clips": 0, "p5": None, "p25": None, "p50": None, "p75": None, "p95": None,
                                         "histogram": {"edges": balance["roll_range_deg"]["histogram"]["edges"],
                                                       "counts": [0] * 12}}
    image = Image.open(io.BytesIO(plot_funnel(rows)))
    assert image.size == (1400, 700)  # the funnel, the reasons and the languages on top, the four histograms below
    bars = np.all(np.abs(np.asarray(image.convert("RGB"), np.int16) - (0x5A, 0x9E, 0x4B)) < 8, axis=-1)
    assert bars[:420].sum() == 0 and bars[420:].sum() > 500  # histogram bars, in the lower panel only
