"""HDR -> SDR against the levels ITU-R BT.2408 publishes (not derived from the code under test):
HDR reference white is 203 cd/m2, 58% of the PQ signal and 75% of HLG's."""
from __future__ import annotations

import numpy as np

from foundation.tone_mapping import HLG, PQ, to_sdr


def grey(signal: float) -> np.ndarray:
    return np.full((2, 2, 3), round(signal * 65535), np.uint16)


def test_reference_white_is_sdr_white_in_both_transfers_and_black_stays_black():
    pq_white, hlg_white = to_sdr(grey(0.58), PQ)[0, 0], to_sdr(grey(0.75), HLG)[0, 0]
    assert abs(int(pq_white[0]) - int(hlg_white[0])) <= 2 and 245 <= pq_white[0] <= 255
    assert (pq_white == pq_white[0]).all()  # grey stays grey through the primaries conversion
    assert to_sdr(grey(0.0), PQ).max() == 0 and to_sdr(grey(0.0), HLG).max() == 0


def test_highlights_roll_off_in_order_and_never_clip_together():
    ramp = np.linspace(0.3, 0.75, 64)  # PQ 30%: about 10 cd/m2; 75%: 1000 cd/m2
    sdr = to_sdr(np.round(ramp * 65535).astype(np.uint16)[None, :, None].repeat(3, axis=2), PQ)[0, :, 0].astype(int)
    assert (np.diff(sdr) >= 0).all() and sdr[0] < 100
    assert sdr[-1] == 255 and len(set(sdr[ramp > 0.6])) >= 3  # gradation up to 1000 cd/m2, not one clipped value
