"""HDR video (PQ or HLG, as phones record it) as an SDR display shows it: BT.2100 -> BT.709.

Stored crops, analysis frames and generation inputs are SDR BT.709, like the data the model learns
from; an HDR frame read as if it were SDR looks grey and desaturated. ffmpeg tone-maps with zscale or
libplacebo, and PyAV's bundled libraries have neither, so the BT.2100 transfer functions (ITU-R BT.2100
tables 4 and 5) and the BT.2020 -> BT.709 primaries conversion are applied here (a lookup table, cv2), after
swscale has scaled the frame and applied its BT.2020 YUV matrix.

HDR reference white, 203 cd/m2 (ITU-R BT.2408: 58% PQ, 75% HLG), becomes SDR white (250 of 255); light
above `KNEE` of it rolls off smoothly up to 1000 cd/m2 instead of clipping, so highlights on skin and hair
keep their shape.
"""
from __future__ import annotations

import cv2
import numpy as np

PQ, HLG = 16, 18  # AVCOL_TRC_SMPTE2084, AVCOL_TRC_ARIB_STD_B67: what frame.color_trc reports
HDR_TRANSFERS = (PQ, HLG)
REFERENCE_WHITE_NITS = 203.0
HDR_PEAK_NITS = 1000.0  # what phones master to, and the nominal display HLG's system gamma 1.2 is defined for
KNEE = 0.9  # linear SDR light above which highlights are compressed, up to HDR_PEAK_NITS at SDR white
SDR_GAMMA = 2.4  # BT.1886: the display an SDR BT.709 signal is made for

# linear BT.2020 RGB -> linear BT.709 RGB (ITU-R BT.2087's inverse); out-of-gamut colours are clipped
BT2020_TO_BT709 = np.array([[1.6605, -0.5876, -0.0728],
                            [-0.1246, 1.1329, -0.0083],
                            [-0.0182, -0.1006, 1.1187]], np.float32)
_BT2020_LUMA = np.array([[0.2627, 0.6780, 0.0593]], np.float32)


def _pq_to_nits(signal: np.ndarray) -> np.ndarray:
    m1, m2, c1, c2, c3 = 2610 / 16384, 2523 / 4096 * 128, 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    power = signal ** (1 / m2)
    return 10000.0 * (np.maximum(power - c1, 0) / (c2 - c3 * power)) ** (1 / m1)


def _hlg_to_scene(signal: np.ndarray) -> np.ndarray:
    """HLG's inverse OETF: scene light in [0, 1]."""
    a = 0.17883277
    b, c = 1 - 4 * a, 0.5 - a * np.log(4 * a)
    return np.where(signal <= 0.5, signal ** 2 / 3, (np.exp((signal - c) / a) + b) / 12)


# every 16-bit code -> linear light (PQ: relative to reference white; HLG: scene light, before its OOTF)
_SIGNAL = np.arange(65536) / 65535
_TO_LINEAR = {PQ: (_pq_to_nits(_SIGNAL) / REFERENCE_WHITE_NITS).astype(np.float32),
              HLG: _hlg_to_scene(_SIGNAL).astype(np.float32)}


def _roll_off(light: np.ndarray) -> np.ndarray:
    """Identity up to KNEE, then an extended-Reinhard shoulder that reaches 1 at the HDR peak (slope 1 at
    the knee: no visible seam)."""
    above = np.maximum(light - KNEE, 0) / (1 - KNEE)
    white = (HDR_PEAK_NITS / REFERENCE_WHITE_NITS - KNEE) / (1 - KNEE)
    return np.minimum(light, KNEE) + (1 - KNEE) * np.minimum(above * (1 + above / white ** 2) / (1 + above), 1)


def to_sdr(rgb48: np.ndarray, transfer: int) -> np.ndarray:
    """(H, W, 3) uint16 non-linear BT.2100 RGB (`transfer` PQ or HLG) -> (H, W, 3) uint8 BT.709 SDR RGB.

    About 130 ms (PQ) to 240 ms (HLG) a 1080p frame on one CPU core (a plain SDR conversion: 20 ms); cv2 for the per-pixel
    arithmetic, which numpy does several times slower on interleaved channels.
    """
    light = _TO_LINEAR[transfer][rgb48]
    if transfer == HLG:  # the OOTF: scene light -> display light, gamma 1.2 on luminance, in reference whites
        luma = np.maximum(cv2.transform(light, _BT2020_LUMA), 1e-6)
        light *= (HDR_PEAK_NITS / REFERENCE_WHITE_NITS * cv2.pow(luma, 0.2))[..., None]
    light = cv2.transform(light, BT2020_TO_BT709)
    np.maximum(light, 0, out=light)
    peak = np.maximum(np.maximum(light[..., 0], light[..., 1]), light[..., 2])
    hot = peak > KNEE  # few pixels: the shoulder on the brightest channel keeps their hue
    if hot.any():
        light[hot] *= (_roll_off(peak[hot]) / peak[hot])[:, None]
    return cv2.convertScaleAbs(cv2.pow(light, 1 / SDR_GAMMA), alpha=255)
