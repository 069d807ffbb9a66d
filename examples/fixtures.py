"""Talking-clip test fixtures: real face photos that speak real speech, plus broken inputs.

Each variant is an mp4 (H.264 yuv420p + AAC, 25 fps) rendered from the photos and LibriVox speech in
`examples/assets`, together with the manifest outcome the curation pipeline should reach for it.
The mouth follows what is said, not how loud it is (`examples.articulation`): its aperture comes
from the vowel quality and frication of the sound, the lips spread or round with it, they lead
the sound by 1.5 frames, and the utterances are separated by pauses of varying length. The lower
lip and jaw are warped down and the gap is filled dark, the mouth region is stretched or squeezed
across, so face-mesh landmarks (inner lips 13/14, corners 78/308) really move.

    python -m examples.fixtures --out DIR [--variants in_sync,two_faces] [--duration 5] [--size 640x480]
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterable, Iterator, Literal, Optional

import av
import cv2
import mediapipe as mp
import numpy as np
import soundfile as sf

from curation import reasons
from examples.articulation import MouthTrack, articulation
from curation.config import ClipsConfig

log = logging.getLogger(__name__)

ASSETS = Path(__file__).parent / "assets"
FPS = 25
SAMPLE_RATE = 16000
SPEECH_FILES = ("speech_0880.wav", "speech_0930.wav", "speech_0870.wav")
PAUSES_S = (0.3, 0.7, 0.45)  # silence after each utterance: natural pauses of varying length
PHOTOS = {"astronaut": "astronaut.jpg", "grace_hopper": "grace_hopper.jpg", "coffee": "coffee.jpg"}
FACELESS = frozenset({"coffee"})

# face-mesh landmark ids (478-point refined mesh)
LOWER_INNER_LIP = 14
INNER_CORNERS = (78, 308)
CHIN = 152

MAX_OPEN = 0.45  # fully open mouth gap as a fraction of the inner mouth width
MAX_SPREAD = 0.15  # mouth width change of fully spread (+) or rounded (-) lips, as a fraction
MOUTH_RGB = (70, 22, 28)
FACE_FRAC = 0.45  # face-mesh box height / frame height for ordinary clips
TINY_FACE_FRAC = 0.13  # about 58 px at 480 p: the full-range detector finds it, below quality.min_face_px
NOISE_LEVEL = 3  # +- grey levels of per-frame sensor noise

ACCEPTED = "accepted"
REJECTED = "rejected"


@dataclass(frozen=True)
class Variant:
    shots: tuple[tuple[str, ...], ...] = (("astronaut",),)  # consecutive shots; photos side by side
    face_frac: float = FACE_FRAC
    audio: Literal["speech", "silent", "none"] = "speech"
    shift_frames: int = 0  # audio delayed by this many video frames beyond the lips' natural lead
    damage: Literal["none", "truncate", "text"] = "none"
    suffix: str = ".mp4"
    reason: Optional[str] = None  # expected reject code; None = accepted by curation


VARIANTS: dict[str, Variant] = {
    "in_sync": Variant(),
    "shifted_5": Variant(shift_frames=5),
    "shifted_10": Variant(shift_frames=10),
    "two_faces": Variant(shots=(("astronaut", "grace_hopper"),), reason=reasons.MULTIPLE_FACES),
    "no_face": Variant(shots=(("coffee",),), reason=reasons.NO_FACE),
    "scene_cut": Variant(shots=(("astronaut",), ("grace_hopper",))),
    "silent": Variant(audio="silent"),
    "no_audio": Variant(audio="none", reason=reasons.NO_AUDIO),
    "truncated": Variant(damage="truncate", reason=reasons.CORRUPT_MEDIA),
    "wrong_extension": Variant(damage="text", reason=reasons.CORRUPT_MEDIA),  # text file named .mp4
    "odd_extension": Variant(suffix=".dat"),  # a valid mp4 named .dat: content decides, not the name
    "tiny_face": Variant(face_frac=TINY_FACE_FRAC, reason=reasons.FACE_TOO_SMALL),
}


@dataclass
class FixtureInfo:
    """One written fixture and what the curation pipeline should make of it."""

    path: Path
    variant: str
    status: str
    reason: Optional[str]
    clips: int  # clips the pipeline should cut (default clip lengths)
    faces: int  # faces visible per frame
    shift_frames: int  # audio later than natural speech (lips leading by LIP_LEAD_S) by this many frames
    cuts: list[int]  # first frame of every shot after the first
    has_audio: bool
    speech: bool
    duration_s: float
    mouth_open: np.ndarray = field(repr=False)  # per video frame, 0 closed .. 1 fully open
    mouth_spread: np.ndarray = field(repr=False)  # per video frame, -1 rounded .. +1 spread lips
    loudness: np.ndarray = field(repr=False)  # per video frame RMS of the audio track as written

    def expected(self) -> dict:
        """The JSON outcome written to expected.json (no path, no per-frame signals)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOT_EXPECTED}


_NOT_EXPECTED = ("path", "mouth_open", "mouth_spread", "loudness")


@dataclass(frozen=True)
class MouthRig:
    """Where and how to open one photo's mouth: a backward-warp field over the lower face."""

    lip_y: float  # top of the lower inner lip: everything below moves with the jaw
    centre_x: float
    half_width: float  # half the inner-corner distance
    roi: tuple[int, int, int, int]  # x0, y0, x1, y1 of the warped region
    grid_x: np.ndarray
    grid_y: np.ndarray
    weight: np.ndarray  # 0..1 share of the jaw drop each ROI pixel follows
    lips: np.ndarray  # 0..1 share of a lip spread each ROI pixel follows (the lips and their corners)


@dataclass(frozen=True)
class Photo:
    rgb: np.ndarray
    face_box: Optional[tuple[float, float, float, float]]  # face-mesh extent x0, y0, x1, y1
    rig: Optional[MouthRig]


def speech_track(duration_s: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The bundled utterances with their pauses, repeated to `duration_s` (float32 mono)."""
    speech = speech_loop(sample_rate)
    n = round(duration_s * sample_rate)
    return np.tile(speech, math.ceil(n / len(speech)))[:n]


@functools.lru_cache(maxsize=2)
def speech_loop(sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The bundled utterances, each followed by its pause: what speech_track repeats."""
    parts = []
    for name, pause_s in zip(SPEECH_FILES, PAUSES_S):
        audio, sr = sf.read(ASSETS / name, dtype="float32")
        if sr != sample_rate:
            raise ValueError(f"{name} is {sr} Hz; the fixtures are built at {sample_rate} Hz")
        parts += [audio, np.zeros(round(pause_s * sample_rate), np.float32)]
    return np.concatenate(parts)


# C, A minor, F, G major triads (Hz): the chord bed's progression, one chord a second
CHORDS_HZ = ((261.6, 329.6, 392.0), (220.0, 261.6, 329.6), (174.6, 220.0, 261.6), (196.0, 246.9, 293.7))


def chord_bed(n: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A music-like background: synthesized triads of five harmonics each (1/h amplitudes), a new chord every
    second struck with a decaying envelope; unit RMS, float32."""
    t = np.arange(n) / sample_rate
    step = np.arange(n) // sample_rate
    since = t - step
    bed = np.zeros(n)
    for chord in range(len(CHORDS_HZ)):
        on = step % len(CHORDS_HZ) == chord
        for f in CHORDS_HZ[chord]:
            bed[on] += sum(np.sin(2 * np.pi * f * h * t[on]) / h for h in range(1, 6))
    bed *= np.exp(-2.0 * since)
    return (bed / np.sqrt(np.mean(bed ** 2))).astype(np.float32)


def with_background(speech: np.ndarray, background: np.ndarray, snr_db: float) -> np.ndarray:
    """`speech` plus `background` scaled to `snr_db` below the speech's RMS, clipped to [-1, 1]."""
    gain = np.sqrt(np.mean(speech ** 2) / np.mean(background ** 2) / 10 ** (snr_db / 10))
    return np.clip(speech + gain * background[:len(speech)], -1, 1).astype(np.float32)


def loudness_envelope(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, fps: int = FPS) -> np.ndarray:
    """RMS of the audio under each video frame (frame i covers [i/fps, (i+1)/fps))."""
    hop = sample_rate // fps
    frames = len(audio) // hop
    return np.sqrt(np.mean(audio[: frames * hop].reshape(frames, hop).astype(np.float64) ** 2, axis=1))


@functools.lru_cache(maxsize=None)
def load_photo(name: str) -> Photo:
    """A bundled photo with its face located once by the face mesh (no box and rig for the face-free one)."""
    rgb = cv2.cvtColor(cv2.imread(str(ASSETS / PHOTOS[name])), cv2.COLOR_BGR2RGB)
    if name in FACELESS:
        return Photo(rgb, None, None)
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True) as mesh:
        found = mesh.process(rgb).multi_face_landmarks
    if not found:
        raise RuntimeError(f"face mesh finds no face in asset {name}")
    h, w = rgb.shape[:2]
    points = np.array([(p.x * w, p.y * h) for p in found[0].landmark], np.float32)
    box = (*points.min(axis=0), *points.max(axis=0))
    return Photo(rgb, tuple(float(v) for v in box), _mouth_rig(points, rgb.shape))


def _mouth_rig(points: np.ndarray, shape: tuple[int, ...]) -> MouthRig:
    left, right = points[INNER_CORNERS[0]], points[INNER_CORNERS[1]]
    centre_x = float(left[0] + right[0]) / 2
    half_width = float(abs(right[0] - left[0])) / 2
    lip_y = float(points[LOWER_INNER_LIP][1])
    chin_y = float(points[CHIN][1])
    face_half = float(points[:, 0].max() - points[:, 0].min()) / 2
    face_h = float(points[:, 1].max() - points[:, 1].min())
    x0, x1 = max(0, int(centre_x - 1.2 * face_half)), min(shape[1], int(centre_x + 1.2 * face_half) + 1)
    y0, y1 = max(0, int(lip_y - 2 * half_width)), min(shape[0], int(chin_y + 0.4 * face_h) + 1)
    grid_x, grid_y = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
    # across: the whole width of the mouth drops, the cheeks follow less and less towards the face edge
    u = np.abs(grid_x - centre_x) / half_width
    across = np.where(u <= 1, 1.0, 0.5 + 0.5 * np.cos(np.pi * np.clip((u - 1) / (face_half / half_width - 1), 0, 1)))
    # down: a hard step at the lip line inside the mouth (the gap gets painted), a soft ramp beside it
    ramp = np.maximum(u - 1, 0) * half_width + 1e-3
    down = np.clip((grid_y - lip_y + ramp) / ramp, 0, 1)
    neck = np.clip(1 - (grid_y - chin_y) / (0.35 * face_h), 0, 1)  # stretch the neck, not the collar
    weight = (across * down * neck).astype(np.float32)
    # lip spread: the lips and the skin around the corners, fading out towards the cheeks and chin
    lips = np.exp(-0.5 * (((grid_x - centre_x) / (1.8 * half_width)) ** 2 + ((grid_y - lip_y) / half_width) ** 2))
    return MouthRig(lip_y, centre_x, half_width, (x0, y0, x1, y1), grid_x, grid_y, weight, lips.astype(np.float32))


def open_mouth(photo: Photo, opening: float, spread: float = 0.0) -> np.ndarray:
    """The photo with its jaw dropped by `opening` (0..1), its lips spread (spread > 0) or rounded
    (< 0) across, and the lip gap painted as a dark mouth."""
    rig = photo.rig
    drop = opening * MAX_OPEN * 2 * rig.half_width if rig else 0.0
    stretch = 1 + MAX_SPREAD * spread
    if rig is None or (drop < 0.25 and abs(stretch - 1) * rig.half_width < 0.25):
        return photo.rgb
    img = photo.rgb.copy()
    x0, y0, x1, y1 = rig.roi
    # backward map: a lip point at distance d from the centre comes from distance d / stretch
    map_x = rig.grid_x - rig.lips * (rig.grid_x - rig.centre_x) * (1 - 1 / stretch)
    img[y0:y1, x0:x1] = cv2.remap(photo.rgb, map_x, rig.grid_y - drop * rig.weight,
                                  cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if drop >= 0.25:
        scale = 16  # cv2 drawing takes fixed-point coordinates (shift=4) for sub-pixel ellipses
        centre = (round(rig.centre_x * scale), round((rig.lip_y + drop / 2) * scale))
        axes = (round(0.9 * rig.half_width * stretch * scale), round(drop / 2 * scale))
        cv2.ellipse(img, centre, axes, 0, 0, 360, MOUTH_RGB, -1, cv2.LINE_AA, shift=4)
    return img


def _placement(photo: Photo, cell: tuple[int, int], face_frac: float) -> np.ndarray:
    """3x3 affine putting the face (face_frac of the cell height) a bit above the cell centre."""
    w, h = cell
    if photo.face_box is None:  # no face: cover the cell
        ph, pw = photo.rgb.shape[:2]
        scale = max(w / pw, h / ph)
        cx, cy, tx, ty = pw / 2, ph / 2, w / 2, h / 2
    else:
        x0, y0, x1, y1 = photo.face_box
        scale = face_frac * h / (y1 - y0)
        cx, cy, tx, ty = (x0 + x1) / 2, (y0 + y1) / 2, w / 2, 0.45 * h
    return np.array([[scale, 0, tx - scale * cx], [0, scale, ty - scale * cy], [0, 0, 1]])


def _head_motion(t: np.ndarray, cell: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(frames, 3, 3) smooth small sway: rotation, zoom and drift about the cell centre."""
    w, h = cell
    phase = rng.uniform(0, 2 * np.pi, 4)
    angle = 1.5 * np.sin(2 * np.pi * 0.23 * t + phase[0])
    zoom = 1 + 0.03 * np.sin(2 * np.pi * 0.17 * t + phase[1])
    dx = 0.012 * w * np.sin(2 * np.pi * 0.31 * t + phase[2])
    dy = 0.008 * h * np.sin(2 * np.pi * 0.27 * t + phase[3])
    out = np.tile(np.eye(3), (len(t), 1, 1))
    for i in range(len(t)):
        out[i, :2] = cv2.getRotationMatrix2D((w / 2, h / 2), float(angle[i]), float(zoom[i]))
        out[i, :2, 2] += (dx[i], dy[i])
    return out


def shot_bounds(variant: Variant, frames: int) -> list[int]:
    """Frame index where each shot starts, plus the end: equal shots with hard cuts between."""
    return [round(frames * k / len(variant.shots)) for k in range(len(variant.shots) + 1)]


def render_frames(variant: Variant, mouth: MouthTrack, size: tuple[int, int], seed: int) -> Iterator[np.ndarray]:
    """Yield (H, W, 3) uint8 RGB frames: shots in turn, each cell a photo with its mouth shaped."""
    w, h = size
    rng = np.random.default_rng(seed)
    n = len(mouth.aperture)
    # sensor noise, so no two frames are identical: crops of one noise field at random offsets
    noise = rng.integers(-NOISE_LEVEL, NOISE_LEVEL + 1, (h + 16, w + 16, 3), dtype=np.int16)
    offsets = rng.integers(0, 16, (n, 2))
    bounds = shot_bounds(variant, n)
    for shot, start, stop in zip(variant.shots, bounds[:-1], bounds[1:]):
        edges = np.linspace(0, w, len(shot) + 1).round().astype(int)
        cells = []
        for name, left, right in zip(shot, edges[:-1], edges[1:]):
            photo, cell = load_photo(name), (int(right - left), h)
            place = _placement(photo, cell, variant.face_frac)
            cells.append((photo, left, right, _head_motion(np.arange(start, stop) / FPS, cell, rng) @ place))
        for i in range(start, stop):
            frame = np.empty((h, w, 3), np.uint8)
            for photo, left, right, warps in cells:
                frame[:, left:right] = cv2.warpAffine(open_mouth(photo, mouth.aperture[i], mouth.spread[i]),
                                                      warps[i - start, :2],
                                                      (int(right - left), h), flags=cv2.INTER_LINEAR,
                                                      borderMode=cv2.BORDER_REPLICATE)
            oy, ox = offsets[i]
            yield cv2.add(frame, noise[oy:oy + h, ox:ox + w], dtype=cv2.CV_8U)


def write_mp4(path: Path, frames: Iterable[np.ndarray], size: tuple[int, int], audio: Optional[np.ndarray],
              sample_rate: int = SAMPLE_RATE) -> None:
    """H.264 yuv420p (+ AAC mono) in an mp4 container whatever the file name says."""
    with av.open(str(path), "w", format="mp4") as out:
        vstream = out.add_stream("libx264", rate=FPS)
        vstream.width, vstream.height = size
        vstream.pix_fmt = "yuv420p"
        vstream.options = {"crf": "23", "preset": "veryfast"}
        astream = None if audio is None else out.add_stream("aac", rate=sample_rate, layout="mono")
        for rgb in frames:
            out.mux(vstream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(vstream.encode())
        if astream is not None:
            chunk = 1024
            for start in range(0, len(audio), chunk):
                frame = av.AudioFrame.from_ndarray(audio[None, start:start + chunk], format="fltp", layout="mono")
                frame.sample_rate, frame.pts = sample_rate, start
                out.mux(astream.encode(frame))
            out.mux(astream.encode())


def expected_clips(variant: Variant, frames: int, clips: ClipsConfig = ClipsConfig()) -> int:
    """Clips the pipeline should cut from an accepted variant: shots of >= min_s, split into pieces <= max_s."""
    bounds = shot_bounds(variant, frames)
    shots_s = [(stop - start) / FPS for start, stop in zip(bounds[:-1], bounds[1:])]
    return sum(math.ceil(s / clips.max_s) for s in shots_s if s >= clips.min_s)


def generate(variant: str, out_path: Path, *, duration_s: float = 5.0, size: tuple[int, int] = (640, 480),
             seed: int = 0) -> FixtureInfo:
    """Write one fixture to `out_path` and return what the pipeline should make of it."""
    spec = VARIANTS[variant]
    if size[0] % 2 or size[1] % 2:
        raise ValueError(f"frame size {size} must be even (yuv420p)")
    out_path = Path(out_path)
    frames = round(duration_s * FPS)
    hop = SAMPLE_RATE // FPS
    # silent: -60 dBFS hiss, so the track exists but carries no speech (the mouth stays shut)
    speech = speech_track(frames / FPS) if spec.audio != "silent" else (
        np.random.default_rng(seed).normal(0, 10 ** (-60 / 20), frames * hop).astype(np.float32))
    mouth = articulation(speech, SAMPLE_RATE, FPS, frames)
    # the mouth speaks the undelayed speech; the track we write lags it by shift_frames
    audio = np.concatenate([np.zeros(spec.shift_frames * hop, np.float32), speech])[: len(speech)]
    if spec.damage == "text":
        out_path.write_text("This is a plain text file that merely carries a video file name.\n")
    else:
        write_mp4(out_path, render_frames(spec, mouth, size, seed), size, None if spec.audio == "none" else audio)
    if spec.damage == "truncate":  # the moov atom sits at the end, so the cut leaves it unopenable
        data = out_path.read_bytes()
        out_path.write_bytes(data[: int(len(data) * 0.4)])
    clips = expected_clips(spec, frames)
    reason = spec.reason or (None if clips else reasons.TOO_SHORT)
    info = FixtureInfo(
        path=out_path, variant=variant, status=REJECTED if reason else ACCEPTED, reason=reason,
        clips=0 if reason else clips, faces=max(sum(name not in FACELESS for name in shot) for shot in spec.shots),
        shift_frames=spec.shift_frames, cuts=shot_bounds(spec, frames)[1:-1], has_audio=spec.audio != "none",
        speech=spec.audio == "speech", duration_s=frames / FPS, mouth_open=mouth.aperture, mouth_spread=mouth.spread,
        loudness=loudness_envelope(audio),
    )
    log.debug("fixture %s -> %s (%s)", variant, out_path, reason or ACCEPTED)
    return info


def file_name(variant: str) -> str:
    return variant + VARIANTS[variant].suffix


def generate_all(out_dir: Path, variants: Optional[list[str]] = None, *, duration_s: float = 5.0,
                 size: tuple[int, int] = (640, 480), seed: int = 0) -> list[FixtureInfo]:
    """Write the chosen variants (all by default) and `expected.json` (file name -> expected outcome)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    infos = [generate(v, out_dir / file_name(v), duration_s=duration_s, size=size, seed=seed)
             for v in variants or list(VARIANTS)]
    expected = {info.path.name: info.expected() for info in infos}
    (out_dir / "expected.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")
    return infos


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--variants", help=f"comma-separated subset of: {','.join(VARIANTS)}")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per clip")
    parser.add_argument("--size", type=_size, default=(640, 480), help="frame size WxH (even numbers)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    variants = args.variants.split(",") if args.variants else None
    unknown = set(variants or []) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for info in generate_all(args.out, variants, duration_s=args.duration, size=args.size, seed=args.seed):
        print(f"{info.path}\t{info.status}\t{info.reason or ''}")


if __name__ == "__main__":
    main()
