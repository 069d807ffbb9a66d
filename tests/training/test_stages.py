"""Both stages on CPU with the tiny preset, from shards curated out of real fixture clips."""
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from foundation.syncnet import SyncNet, SyncNetScorer
from model.evaluate import evaluate_video
from model.weights import load_net, read_index
from training.checkpoint import COMPLETE, latest_tag

from stagerun import ROOT, keys_by_rank, losses, run_stage, stage_overrides

TRAINED_IN_STAGE2 = ("audio_proj.", "denoising_unet.audio_modules.", "denoising_unet.motion_modules.")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def base_with_syncnet(tiny_pretrained, tmp_path_factory) -> Path:
    """The tiny bases plus random SyncNet weights where `hallo-weights fetch` puts the real ones."""
    base = tmp_path_factory.mktemp("base")
    for entry in tiny_pretrained.iterdir():
        (base / entry.name).symlink_to(entry)
    weights = base / "syncnet" / "syncnet_v2.model"
    weights.parent.mkdir()
    torch.manual_seed(0)
    torch.save(SyncNet().state_dict(), weights)
    return base


@pytest.fixture(scope="module")
def stage1_run(curated_shards, base_with_syncnet, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stage1")
    # Progress lines every 2 steps and never by the clock, so that which ones appear does not depend on speed.
    sets = stage_overrides(curated_shards, base_with_syncnet, out, **{"run.progress_every": 2, "run.progress_seconds": 1000000})
    result = run_stage("stage1", sets)
    assert result.returncode == 0, result.stderr[-4000:]
    assert len(losses(result.stderr)) == 4
    assert "validation lip sync at step 4" in result.stderr
    (out / "stderr.log").write_text(result.stderr)
    return out


def test_a_run_without_a_terminal_logs_progress_outputs_and_a_summary(stage1_run: Path) -> None:
    log = (stage1_run / "stderr.log").read_text()  # captured output: no TTY, as under nohup or a ray job
    progress = re.findall(r"stage1 step (\d+)/4 \(\d+%\) loss [0-9.]+ lr \S+ [0-9.]+ samples/s elapsed \S+ ETA (\S+)", log)
    assert [int(step) for step, _ in progress] == [1, 2, 4]  # the first step, then every 2 and the last
    assert progress[-1][1] == "0s"
    for step in (2, 4):
        assert f"stage1 step {step}: checkpoint saved in {stage1_run / 'checkpoints' / f'step-{step:07d}'}" in log
        assert f"stage1 step {step}: export written to {stage1_run / 'export'}" in log
    assert f"stage1 step 4: validation video {stage1_run / 'validation' / 'step-0000004' / 'validation.mp4'}" in log
    assert re.search(rf"stage1 done: 4 steps in \S+ \([0-9.]+ samples/s\), final loss [0-9.]+; export {stage1_run / 'export'}", log)
    assert "communication op" in log  # the slow start-up is announced
    assert "it/s]" not in log  # no tqdm bar in a log file


def test_stage1_writes_checkpoints_exports_and_a_validation_video(stage1_run: Path) -> None:
    ckpt = stage1_run / "checkpoints"
    assert latest_tag(ckpt) == "step-0000004" and (ckpt / "step-0000004" / COMPLETE).exists()
    assert sorted(p.name for p in ckpt.glob("step-*")) == ["step-0000002", "step-0000004"]  # keep_last 2
    net = load_net(stage1_run / "export")
    assert read_index(stage1_run / "export").preset == "tiny"
    assert not read_index(stage1_run / "export").behaviour.temporal  # generation skips the untrained motion modules
    assert sum(p.numel() for p in net.parameters()) > 0
    assert (stage1_run / "validation" / "step-0000004" / "validation.mp4").stat().st_size > 0
    assert list((stage1_run / "tensorboard").glob("events.out.tfevents.*"))


def test_validation_logs_lip_sync_metrics_when_syncnet_weights_are_in_the_base(stage1_run, base_with_syncnet) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(stage1_run / "tensorboard"))
    events.Reload()
    logged = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in ("validation/sync_c", "validation/sync_d")}
    video = stage1_run / "validation" / "step-0000004" / "validation.mp4"
    expected = evaluate_video(video, SyncNetScorer(base_with_syncnet / "syncnet" / "syncnet_v2.model", "cpu"))
    assert logged["validation/sync_c"] == [(4, pytest.approx(expected.lse_c, rel=1e-4, abs=1e-4))]
    assert logged["validation/sync_d"] == [(4, pytest.approx(expected.lse_d, rel=1e-4))]


def test_stage2_from_stage1_then_generation_loads_its_export(stage1_run, curated_shards, tiny_pretrained, tmp_path) -> None:
    out = tmp_path / "stage2"
    sets = stage_overrides(curated_shards, tiny_pretrained, out, **{"model.init_from": str(stage1_run / "export"),
                                                                     "run.max_steps": 2, "run.validate_every": 0})
    result = run_stage("stage2", sets)
    assert result.returncode == 0, result.stderr[-4000:]
    assert sorted(step for _, step in losses(result.stderr)) == [1, 2]
    # Only the audio and motion parts moved.
    before, after = load_net(stage1_run / "export"), load_net(out / "export")
    changed = {name for (name, a), b in zip(before.named_parameters(), after.parameters()) if not a.equal(b)}
    assert changed and all(name.startswith(TRAINED_IN_STAGE2) for name in changed)
    video = tmp_path / "gen.mp4"
    gen = subprocess.run([sys.executable, "-m", "model.generate", "--weights", str(out / "export"), "--image",
                          str(ROOT / "examples/assets/astronaut.jpg"), "--audio", str(ROOT / "examples/assets/speech_0930.wav"),
                          "--out", str(video), "--steps", "1", "--guidance-scale", "1.0"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert gen.returncode == 0, gen.stderr[-3000:]
    assert video.stat().st_size > 0


@pytest.mark.slow
def test_killed_run_resumes_with_the_same_losses(curated_shards, tiny_pretrained, tmp_path) -> None:
    extra = {"run.max_steps": 6, "run.checkpoint_every": 2, "run.validate_every": 0, "run.keep_last": 5}
    reference = run_stage("stage1", stage_overrides(curated_shards, tiny_pretrained, tmp_path / "straight", **extra))
    assert reference.returncode == 0, reference.stderr[-3000:]
    expected = losses(reference.stderr)

    out = tmp_path / "killed"
    cmd = [sys.executable, str(ROOT / "training" / "stage1.py"), "--config", str(ROOT / "configs/demo/stage1.yaml"),
           *stage_overrides(curated_shards, tiny_pretrained, out, **extra)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while latest_tag(out / "checkpoints") is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # polling a condition: the first complete checkpoint
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed_from = int(latest_tag(out / "checkpoints").split("-")[1])
    assert resumed_from < 6

    resumed = run_stage("stage1", stage_overrides(curated_shards, tiny_pretrained, out, **extra))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got = losses(resumed.stderr)
    assert sorted(step for _, step in got) == list(range(resumed_from + 1, 7))
    assert all(f"{got[k]:.6f}" == f"{expected[k]:.6f}" for k in got), (got, expected)


@pytest.mark.slow
def test_two_processes_zero2_disjoint_data_same_weights_and_resume(curated_shards, tiny_pretrained, tmp_path) -> None:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]
    # Frequent condition dropout: a rank that left a module out while the other did not would break the
    # gradient reduction (rank 0's draw holds for all).
    extra = {"run.max_steps": 2, "run.checkpoint_every": 2, "run.validate_every": 0, "run.batch_size": 1,
             "run.zero_stage": 2, "run.precision": "bf16", "diffusion.drop_reference": 0.5,
             "diffusion.drop_face_region": 0.5}
    first = run_stage("stage1", stage_overrides(curated_shards, tiny_pretrained, tmp_path / "ddp", **extra), launcher,
                      timeout=1200)
    assert first.returncode == 0, first.stderr[-4000:]
    keys = keys_by_rank(first.stderr)
    assert set(keys) == {0, 1} and not keys[0] & keys[1]  # each rank reads its own samples
    sums = {int(m[1]): m[2] for m in re.finditer(r"rank (\d+) param-checksum (\S+)", first.stderr)}
    assert set(sums) == {0, 1} and sums[0] == sums[1]  # gradients agreed: identical weights on both ranks
    # Progress, outputs and the summary come from rank 0 alone: once each, not once per rank.
    assert len(re.findall(r"stage1 step 1/2 ", first.stderr)) == 1
    assert len(re.findall(r"stage1 step 2: checkpoint saved", first.stderr)) == 1
    assert len(re.findall(r"stage1 done: 2 steps", first.stderr)) == 1
    assert first.stderr.count("communication op") == 1
    extra["run.max_steps"] = 3
    resumed = run_stage("stage1", stage_overrides(curated_shards, tiny_pretrained, tmp_path / "ddp", **extra), launcher,
                        timeout=1200)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert {step for _, step in losses(resumed.stderr)} == {3}


def test_a_non_finite_loss_stops_naming_the_step_and_the_batch(curated_shards, tiny_pretrained, tmp_path) -> None:
    # An absurd offset-noise scale makes the loss overflow on the first step.
    sets = stage_overrides(curated_shards, tiny_pretrained, tmp_path / "nan", **{"diffusion.noise_offset": 1e30})
    result = run_stage("stage1", sets)
    assert result.returncode != 0
    assert re.search(r"FloatingPointError: stage1: loss is (inf|nan) at step 1; batch keys \['\w+", result.stderr)
    assert not (tmp_path / "nan" / "checkpoints" / "latest").exists()
