"""The benchmark scripts run as a user runs them (`python -m benchmarks.NAME` from the repository
root) with tiny arguments, and write their JSON and PNG.

No timing is asserted (machines are noisy): only that every measurement, ratio and stage is there
and consistent with what was run.
"""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_benchmark(name: str, out: Path, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--out", str(out), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"wrote {out / name}.json" in done.stdout
    assert (out / f"{name}.png").stat().st_size > 1000
    doc = json.loads((out / f"{name}.json").read_text())
    assert doc["benchmark"] == name and doc["machine"]["cores"] >= 1 and doc["machine"]["cpu"]
    return doc


@pytest.mark.slow  # curates a fixture clip and runs the reference on it: about 30 s
def test_curation_benchmark(tmp_path) -> None:
    doc = run_benchmark("curation", tmp_path, "--sizes", "320x240", "--duration", "2.5", "--wav2vec2", "tiny")
    (clip,) = doc["clips"]
    assert clip["size"] == [320, 240] and clip["frames"] == round(2.5 * 25)
    assert clip["ours"]["outcomes"] == ["accepted"]
    ours, reference = clip["ours"]["stages_s"], clip["reference"]["stages_s"]
    assert list(ours)[-1] == list(reference)[-1] == "other"
    assert all(ours[s] > 0 for s in ("decode (analysis size)", "face mesh", "annotations", "encode + write sample",
                                     "speech screen (VAD, whole source)", "face probe", "picture change",
                                     "motion per clip"))
    (checks,) = doc["checks"]  # the accepted clip, priced against itself
    assert checks["share_of_accepted"] == 1 and 0 < checks["new_checks/rest"] == clip["ratios"]["new checks/rest (wall)"]
    assert all(reference[s] > 0 for s in ("ffmpeg: frames to PNG", "face mesh per PNG", "ffmpeg: audio to wav"))
    assert clip["reference"]["frames"] == clip["frames"] and clip["reference"]["frames_with_face"] > 0
    for part in ("floor", "ours", "reference"):
        assert clip[part]["wall_s"] > 0 and clip[part]["cpu_s"] > 0
    for part in ("ours", "reference"):  # the stages account for the whole wall time, each second once
        assert math.isclose(sum(clip[part]["stages_s"].values()), clip[part]["wall_s"], rel_tol=0.02)
    assert clip["ratios"]["ours/floor (wall)"] == pytest.approx(clip["ours"]["wall_s"] / clip["floor"]["wall_s"])
    assert clip["ratios"]["reference/ours (cpu)"] == pytest.approx(clip["reference"]["cpu_s"] / clip["ours"]["cpu_s"])


@pytest.mark.slow  # curates two fixture clips into shards, forks DataLoader workers: about a minute
def test_loader_benchmark(tmp_path) -> None:
    doc = run_benchmark("loader", tmp_path, "--presets", "tiny,sd15", "--sources", "2", "--duration", "2.5",
                        "--samples", "3", "--min-wall-s", "0", "--workers", "2", "--wav2vec2", "tiny",
                        "--gpu-step-s", "2")
    assert doc["shards"]["count"] == 2 and doc["shards"]["samples"] == 2
    assert doc["gpu_demand_samples_per_s"] == 2.0 and doc["gpu_step_assumed"] is False
    assert doc["raw_read"]["samples_per_s"] > 0 and doc["tar_split"]["samples_per_s"] > 0
    assert [p["preset"] for p in doc["presets"]] == ["tiny", "sd15"]
    for preset in doc["presets"]:
        paths = preset["paths"]
        assert list(paths) == ["pixels_float", "pixels", "latents"]
        for path in paths.values():
            assert path["one_process"]["samples"] == 3 and path["loader"]["workers"] == 2
            assert path["margin_vs_one_gpu"] == pytest.approx(path["loader"]["samples_per_s"] / 2.0)
        assert preset["ratios"]["latents / pixels per core"] == pytest.approx(
            paths["latents"]["one_process"]["samples_per_cpu_s"] / paths["pixels"]["one_process"]["samples_per_cpu_s"])
    # The cache's size follows from its format: mean and std, float16, 4 x (R/8)^2 per frame, 25 frames a second.
    for preset, side in (("tiny", 8), ("sd15", 64)):
        (cache,) = [p["cache"] for p in doc["presets"] if p["preset"] == preset]
        assert cache["gb_per_video_hour"] == pytest.approx(2 * 2 * 4 * side * side * 25 * 3600 / 1e9, rel=0.3)


def test_loader_refuses_more_workers_than_shards(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.loader", "--sources", "1", "--workers", "2",
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--sources (1) must be at least --workers (2)" in done.stderr


@pytest.mark.slow  # two training processes (stage 1 and 2, tiny preset), each with pixels and the cache: about 2 minutes
def test_train_step_benchmark(tmp_path) -> None:
    doc = run_benchmark("train_step", tmp_path, "--device", "cpu", "--checkpointing", "off", "--steps", "1",
                        "--warmup", "1")
    configs = doc["configs"]
    assert [(c["stage"], c["checkpointing"]) for c in configs] == [("stage1", False), ("stage2", False)]
    for c in configs:
        assert c["preset"] == "tiny" and c["device"] == "cpu" and c["precision"] == "fp32" and c["batch"] == 1
        pixels, cache = c["inputs"]["pixels"], c["inputs"]["cache"]
        for measured in (pixels, cache):
            assert measured["step_s"] > 0 and measured["peak_mb"] > 0
            assert measured["samples_per_s"] == pytest.approx(1 / measured["step_s"])
        # the VAE encoder runs in the step on pixels only
        assert 0 < pixels["vae_encode_share"] < 1 and cache["vae_encode_share"] == 0
        assert c["pixels_over_cache"] == pytest.approx(pixels["step_s"] / cache["step_s"])
    # stage 2 trains only the audio and motion parts: fewer parameters than stage 1
    assert configs[1]["trainable_params_m"] < configs[0]["trainable_params_m"]


@pytest.mark.slow  # about 100 tiny-model passes and the model set-up; minutes on a loaded 2-core machine
def test_generate_benchmark_compares_the_schedules_on_the_same_weights(tmp_path) -> None:
    """Random tiny weights, one clip: the passes it reports are the schedules' own, Hallo's 80 per clip."""
    doc = run_benchmark("generate", tmp_path, "--random-weights", "--preset", "tiny", "--frames", "8",
                        "--schedules", "hallo,fast,unipc:3", "--cpu-threads", "1", "--work", str(tmp_path / "work"))
    rows = {r["schedule"]: r for r in doc["schedules"]}
    assert list(rows) == ["hallo", "fast", "unipc:3"]
    assert (rows["hallo"]["sampler"], rows["hallo"]["steps"], rows["hallo"]["passes_per_clip"]) == ("ddim", 40, 80)
    assert rows["fast"]["passes_per_clip"] == 8 + 4  # guided at timestep >= 600: 999, 874, 749, 624
    assert rows["unipc:3"]["passes_per_clip"] == 3 + 2  # 999 and 666 guided, 333 not
    for r in rows.values():
        assert r["clips"] == 1 and r["frames"] == 8 and r["passes_per_frame"] == r["passes_per_clip"] / 8
        assert r["s_per_frame"] > 0 and r["peak_mb"] > 0 and "psnr" not in r  # random weights: no quality
        ratio = doc["ratios"][r["schedule"]]
        assert ratio["fewer_passes_than_hallo"] == pytest.approx(80 / r["passes_per_clip"])
        assert ratio["faster_than_hallo"] == pytest.approx(rows["hallo"]["s_per_frame"] / r["s_per_frame"])


def test_generate_benchmark_refuses_an_unknown_schedule(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.generate", "--schedules", "hallo,euler:5", "--out",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "schedule 'euler:5'" in done.stderr


@pytest.mark.slow  # curates a fixture clip, generates per schedule and runs two training processes: about 2 minutes
def test_gpu_check_runs_on_cpu_with_the_tiny_preset(tmp_path) -> None:
    """`python -m benchmarks.gpu` on a GPU runs nothing this does not run."""
    doc = run_benchmark("gpu", tmp_path, "--device", "cpu", "--preset", "tiny", "--frames", "8", "--steps", "1",
                        "--work", str(tmp_path / "work"))
    assert doc["preset"] == "tiny" and doc["precision"] == "fp32" and doc["latent_cache_s"] > 0
    assert [g["schedule"] for g in doc["generation"]] == ["hallo", "balanced", "fast"]
    assert all(g["s_per_frame"] > 0 and g["peak_mb"] > 0 for g in doc["generation"])
    assert [t["stage"] for t in doc["training"]] == ["stage1", "stage2"]
    for t in doc["training"]:
        assert t["checkpointing"] is True and set(t["inputs"]) == {"pixels", "cache"}
        assert all(m["step_s"] > 0 for m in t["inputs"].values())
    assert doc["hallo_paper"] == {"s_per_frame": 1.63, "gpu": "A100", "resolution": 512, "memory_gb": 9.8}
