"""Drift over a long generation, with and without Hallo2's long-video augmentations.

    python -m benchmarks.drift [--work drift_out] [--seconds 24] [--steps 10] [--out benchmarks/results]

On the learning clip (tests/training/test_learning.py: the curated 3-s `in_sync` fixture, the tiny
model overfit on its cached latents with configs/learn/): stage 1 once, then stage 2 twice, plain and
with `diffusion.motion_noise_timesteps=50 diffusion.motion_patch_drop=0.25` (Hallo2's values). Each
stage-2 model generates the clip's audio looped to `--seconds` from the clip's first frame with
`python -m model.generate`, and every clip of the video (the weights' clip_frames) is measured:

- colour: CIE76 distance between the mean CIELAB colour of the face outside the mouth (the clip's face
  box less its lip box) in the frame and in the reference image;
- structure (an identity proxy: the tiny stand-ins have no ArcFace weights): the mean SSIM of the
  grey levels there against the reference image;
- against the clip itself: PSNR of the whole frame against the real frame the looped audio drives
  (the overfit model's exact target).

Work already in `--work` (shards, latents, trained runs) is reused; delete the folder to start over.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf
from skimage.metrics import structural_similarity

from benchmarks.common import DEFAULT_OUT, annotation_overrides, new_figure, print_table, write_results
from examples import fixtures
from curation.config import CurationConfig
from curation.pipeline import process_source_safely
from curation.sources import parse_source
from foundation.config import load_config
from model.presets import get_preset
from examples.standins import write_standins
from model.weights import read_index
from examples.demo import train
from examples.learning import RealClip, generate, psnr
from training.config import CacheEncodeConfig
from training.latent_cache.encode import ClipEncoder, build_cache_shard

log = logging.getLogger("drift")
CLIP_S = 3.0  # the learning test's clip
AUGMENTED = ("--set", "diffusion.motion_noise_timesteps=50", "--set", "diffusion.motion_patch_drop=0.25")  # Hallo2's values
RUNS = {"plain": (), "augmented": AUGMENTED}


def curate(work: Path, base: Path) -> list[str]:
    """The learning clip's shards under work/curated/shards (as examples.demo.train reads them)."""
    shards = sorted((work / "curated" / "shards").glob("*.tar"))
    if not shards:
        (work / "media").mkdir(parents=True, exist_ok=True)
        info = fixtures.generate("in_sync", work / "media" / "in_sync.mp4", duration_s=CLIP_S)
        size = 2 * get_preset("tiny").resolution  # the tiny model trains at 64 px
        cfg = load_config(CurationConfig, None, [*annotation_overrides(base), f"pretrained_dir={base}",
                                                 f"faces.output_size={size}"])
        process_source_safely(parse_source(str(info.path), work / "curated"), work / "curated", cfg)
        shards = sorted((work / "curated" / "shards").glob("*.tar"))
    if len(shards) != 1:
        raise RuntimeError(f"curating the learning clip gave {len(shards)} shards")
    latents = work / "latents"
    if not latents.is_dir():
        resolution = get_preset("tiny").resolution
        encoder = ClipEncoder(CacheEncodeConfig(vae_dir=str(base / "vae"), resolution=resolution, batch_frames=32))
        build_cache_shard(str(shards[0]), latents, encoder, encoder.identity, resolution)
    return [str(s) for s in shards]


def trained(work: Path, base: Path) -> dict[str, Path]:
    """Stage 1 once, stage 2 per entry of RUNS (each skipped when its export exists)."""
    def once(stage: str, name: str, extra: list[str]) -> Path:
        export = work / "runs" / name / "export"
        return export if (export / "weights.yaml").is_file() else train(stage, work, base, extra, name)

    stage1 = once("stage1", "stage1", [])
    return {name: once("stage2", f"stage2_{name}", ["--set", f"model.init_from={stage1}", *extra])
            for name, extra in RUNS.items()}


def non_mouth_face(shape: tuple[int, int], face_box: tuple[int, ...], lip_box: tuple[int, ...]) -> np.ndarray:
    """(H, W) bool: inside the face box, outside the lip box."""
    mask = np.zeros(shape, bool)
    x0, y0, x1, y1 = face_box
    mask[y0:y1, x0:x1] = True
    x0, y0, x1, y1 = lip_box
    mask[y0:y1, x0:x1] = False
    return mask


def frame_drift(frame: np.ndarray, reference: np.ndarray, region: np.ndarray) -> tuple[float, float]:
    """Colour distance (CIE76 of the region's mean Lab colours) and the region's mean SSIM, vs the reference."""
    lab = [cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)[region].mean(axis=0)
           for image in (frame, reference)]
    grey = [cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) for image in (frame, reference)]
    _, ssim_map = structural_similarity(grey[0], grey[1], data_range=255, full=True)
    return float(np.linalg.norm(lab[0] - lab[1])), float(ssim_map[region].mean())


def drift_per_clip(video: np.ndarray, real: RealClip, clip_frames: int) -> dict[str, list[float]]:
    """Per clip of the video: mean colour distance, SSIM (vs the reference image) and PSNR (vs the looped clip)."""
    reference = real.frames[0]
    region = non_mouth_face(reference.shape[:2], real.face_box, real.lip_box)
    looped = real.frames[np.arange(len(video)) % len(real.frames)]
    per_frame = np.array([frame_drift(frame, reference, region) for frame in video])
    out: dict[str, list[float]] = {"colour_delta_e": [], "ssim": [], "psnr_vs_clip_db": []}
    for start in range(0, len(video), clip_frames):
        part = slice(start, start + clip_frames)
        out["colour_delta_e"].append(float(per_frame[part, 0].mean()))
        out["ssim"].append(float(per_frame[part, 1].mean()))
        out["psnr_vs_clip_db"].append(psnr(video[part], looped[part]))
    return out


def summary(series: dict[str, list[float]], first: int = 3) -> dict[str, float]:
    """First `first` clips' mean, last `first` clips' mean, per metric."""
    return {f"{name} {part}": float(np.mean(values[:first] if part == "start" else values[-first:]))
            for name, values in series.items() for part in ("start", "end")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.drift", description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("drift_out"), help="shards, latents, runs, videos (reused)")
    parser.add_argument("--seconds", type=float, default=24.0, help="length of the looped audio")
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps of the generations")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    work = args.work.resolve()
    base = work / "pretrained"
    if not (base / "vae").is_dir():
        write_standins(get_preset("tiny"), base)
    shards = curate(work, base)
    weights = trained(work, base)
    real = RealClip.from_shards(shards, get_preset("tiny").resolution)
    image, _ = real.write_inputs(work / "inputs")
    audio = work / "inputs" / f"looped_{args.seconds:g}s.wav"
    sf.write(audio, np.resize(real.audio, int(args.seconds * real.sample_rate)), real.sample_rate)
    results: dict[str, dict] = {}
    for name, folder in weights.items():
        video = generate(folder, image, audio, work / f"long_{name}.mp4", "--steps", str(args.steps), "--seed", "1",
                         "--set", "cpu_threads=1")
        clip_frames = read_index(folder).clip_frames
        results[name] = {"frames": len(video), "clip_frames": clip_frames, "per_clip": drift_per_clip(video, real, clip_frames)}
        results[name]["summary"] = summary(results[name]["per_clip"])
    names = list(results)
    metrics = list(results[names[0]]["summary"])
    print_table(f"drift over {args.seconds:g} s (first / last 3 clips)", ["metric", *names],
                [[m, *(results[n]["summary"][m] for n in names)] for m in metrics])
    figure, _ = new_figure(12, 3.5)
    figure.clf()
    labels = {"colour_delta_e": "colour distance (CIE76, lower = closer)", "ssim": "SSIM vs reference (higher = closer)",
              "psnr_vs_clip_db": "PSNR vs the real clip, dB"}
    for i, (metric, label) in enumerate(labels.items()):
        ax = figure.add_subplot(1, 3, i + 1)
        for name in names:
            ax.plot(results[name]["per_clip"][metric], label=name)
        ax.set_xlabel("clip index")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=8)
    figure.suptitle(f"face outside the mouth vs the reference image, {args.seconds:g} s of looped audio (tiny model)", fontsize=10)
    payload = {"seconds": args.seconds, "steps": args.steps, "clip": real.key, "runs": {n: list(RUNS[n]) for n in names},
               "results": results}
    json_path, _ = write_results(args.out, "drift", payload, figure)
    print(f"wrote {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
