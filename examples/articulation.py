"""A speaking mouth for the test fixtures, driven by what is said rather than by how loud it is.

Real talking heads break the assumptions a loudness-following synthetic mouth would bake in:
- the lips lead the sound (the articulators move before the sound they shape comes out);
- the aperture follows the sound's quality: open vowels (high first formant, /a/) open the jaw
  wide, close vowels (/i/, /u/) and fricatives (/s/, /f/: loud hiss from nearly closed teeth)
  hardly at all, so a loud sound can come from a small mouth;
- the lips spread for front vowels (high second formant) and round for back vowels;
- articulators are smooth: they anticipate and carry over, so the mouth starts opening before an
  utterance and closes only gradually in a pause.

From a speech track this module derives, per video frame, an aperture (0 closed .. 1 wide open)
and a lip spread (-1 rounded .. +1 spread). It reads spectral shape with a short-time Fourier
transform; it is a stand-in for articulation, not a phonetic model.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import butter, sosfiltfilt, stft

ANALYSIS_RATE = 100  # spectral frames per second (10 ms hop, 25 ms window, like speech front ends)
LIP_LEAD_S = 0.06  # lips lead the sound by 1.5 video frames at 25 fps
COARTICULATION_S = 0.035  # std of the smoothing that makes neighbouring sounds blend into each other
SPEECH_RANGE_DBFS = (-45.0, -30.0)  # RMS level (100 Hz-4 kHz, dB full scale) from a mouth at rest to full voicing
F1_RANGE_HZ = (350.0, 750.0)  # first-formant proxy from a close (/i/, /u/) to an open (/a/) vowel
F2_RANGE_HZ = (1150.0, 1900.0)  # second-formant proxy from rounded (/u/, /o/) to spread (/i/, /e/) lips
CLOSE_VOWEL_APERTURE = 0.2  # aperture of a voiced close vowel, as a share of the widest
REST_APERTURE = 0.04  # lips slightly parted at rest
FRICATION_CLOSING = 0.75  # how far a pure fricative closes the aperture a vowel would give


@dataclass(frozen=True)
class MouthTrack:
    aperture: np.ndarray  # (frames,) 0 closed .. 1 wide open
    spread: np.ndarray  # (frames,) -1 rounded .. 0 neutral .. +1 spread


def _band_centroid(freqs: np.ndarray, power: np.ndarray, lo: float, hi: float) -> np.ndarray:
    band = (freqs >= lo) & (freqs < hi)
    weight = power[band]
    return (freqs[band, None] * weight).sum(0) / np.maximum(weight.sum(0), 1e-20)


def _band_level_dbfs(speech: np.ndarray, sample_rate: int, hop: int, count: int) -> np.ndarray:
    """RMS of the 100 Hz-4 kHz band over 25 ms windows centred every hop samples, in dB full scale."""
    band = sosfiltfilt(butter(4, (100, 4000), "bandpass", fs=sample_rate, output="sos"), speech.astype(np.float64))
    half = round(0.0125 * sample_rate)
    padded = np.pad(band ** 2, half)
    cumulative = np.concatenate([[0.0], np.cumsum(padded)])
    centres = np.arange(count) * hop + half
    mean_square = (cumulative[np.minimum(centres + half, len(padded))] - cumulative[centres - half]) / (2 * half)
    return 10 * np.log10(mean_square + 1e-12)


def _ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def articulation(speech: np.ndarray, sample_rate: int, fps: int, frames: int,
                 lead_s: float = LIP_LEAD_S) -> MouthTrack:
    """Aperture and spread for video frames 0..frames-1 of a speech track that starts at frame 0.

    Frame i shows the mouth shaping the sound heard at time (i + 0.5) / fps + lead_s.
    """
    hop = sample_rate // ANALYSIS_RATE
    freqs, _, spec = stft(speech.astype(np.float64), sample_rate, nperseg=round(0.025 * sample_rate),
                          noverlap=round(0.025 * sample_rate) - hop, nfft=512, boundary="even", padded=True)
    power = np.abs(spec) ** 2
    voicing = _ramp(_band_level_dbfs(speech, sample_rate, hop, power.shape[1]), *SPEECH_RANGE_DBFS)
    openness = _ramp(_band_centroid(freqs, power, 250, 1000), *F1_RANGE_HZ)
    frication = _ramp(power[freqs >= 3500].sum(0) / np.maximum(power.sum(0), 1e-20), 0.3, 0.7)
    aperture = voicing * (CLOSE_VOWEL_APERTURE + (1 - CLOSE_VOWEL_APERTURE) * openness) * (1 - FRICATION_CLOSING * frication)
    spread = voicing * (2 * _ramp(_band_centroid(freqs, power, 1000, 2800), *F2_RANGE_HZ) - 1)
    sigma = COARTICULATION_S * ANALYSIS_RATE
    aperture = np.maximum(gaussian_filter1d(aperture, sigma), REST_APERTURE)
    spread = gaussian_filter1d(spread, sigma)
    # the analysis frame under each video frame's time, plus the lead
    times = (np.arange(frames) + 0.5) / fps + lead_s
    t = np.arange(aperture.shape[0]) / ANALYSIS_RATE
    return MouthTrack(np.interp(times, t, aperture, right=REST_APERTURE), np.interp(times, t, spread, right=0.0))
