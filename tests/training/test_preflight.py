"""Training start-up: every config mistake is one line and exit 2 before DeepSpeed or a model build;
the run folder keeps its config, refuses a resume that would mix configs and a fresh start over an
earlier run (unless told to overwrite)."""
from __future__ import annotations

import dataclasses
import io
import logging
import shutil
import tarfile
from pathlib import Path

import pytest
import torch
import webdataset as wds
import yaml

from foundation import schema
from training import loop
from training.checkpoint import COMPLETE
from training.stage1 import Stage1
from training.stage2 import Stage2


@pytest.fixture
def started(monkeypatch) -> list:
    """Replaces the heavy part of training: records the config it would have trained with."""
    calls: list = []
    monkeypatch.setattr(loop, "train", lambda stage, cfg: calls.append(cfg))
    return calls


@pytest.fixture
def args(tiny_pretrained: Path, tmp_path: Path) -> list[str]:
    shard = tmp_path / "shards" / "train-000000.tar"
    shard.parent.mkdir()
    shard.write_bytes(b"")  # preflight only checks that shards exist; reading them is training's job
    sets = {"data.shards": f"[{tmp_path}/shards/*.tar]", "model.pretrained_dir": str(tiny_pretrained),
            "run.output_dir": str(tmp_path / "run"), "run.device": "cpu", "run.precision": "fp32"}
    return [a for key, value in sets.items() for a in ("--set", f"{key}={value}")]


def _main(stage, argv: list[str], capsys) -> tuple[int, str]:
    code = loop.main(stage, argv)
    return code, capsys.readouterr().err.strip()


def _one_line_error(err: str) -> str:
    last = err.splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in err
    return last


@pytest.mark.parametrize("override, message", [
    ("data.shards=[/nowhere/*.tar]", "config key 'data.shards': '/nowhere/*.tar' matches no file"),
    ("data.shards=[]", "config key 'data.shards' is empty"),
    ("data.validation_shards=[/nowhere/val.tar]", "config key 'data.validation_shards': '/nowhere/val.tar' matches no file"),
    ("run.deepspeed_config=configs/deepspeed_zero2.jsn", "config key 'run.deepspeed_config': no file configs/deepspeed_zero2.jsn"),
    ("model.pretrained_dir=/nowhere/pretrained", "config key 'model.pretrained_dir': /nowhere/pretrained does not exist"),
    ("run.precision=fp16", "config key 'run.precision': fp16 is not supported on CPU"),
    ("model.init_from=/nowhere/export", "config key 'model.init_from': /nowhere/export does not exist"),
])
def test_start_up_mistakes_are_one_line_before_any_heavy_work(args, override, message, started, capsys) -> None:
    code, err = _main(Stage1, [*args, "--set", override], capsys)
    assert code == 2 and not started
    assert message in _one_line_error(err)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
def test_a_missing_gpu_is_named(args, started, capsys) -> None:
    code, err = _main(Stage1, [*args, "--set", "run.device=cuda"], capsys)
    assert code == 2 and "config key 'run.device': cuda asked for, but torch sees no CUDA device" in _one_line_error(err)


def test_incomplete_bases_and_exports_are_named(args, tiny_pretrained, tmp_path, started, capsys) -> None:
    base = tmp_path / "base"
    shutil.copytree(tiny_pretrained, base)
    (base / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    code, err = _main(Stage1, [*args, "--set", f"model.pretrained_dir={base}"], capsys)
    assert code == 2 and f"{base}/unet is incomplete: no diffusion_pytorch_model" in _one_line_error(err)
    code, err = _main(Stage2, args, capsys)
    assert code == 2 and "config key 'model.init_from' is not set" in _one_line_error(err)
    export = tmp_path / "export"
    export.mkdir()
    code, err = _main(Stage2, [*args, "--set", f"model.init_from={export}"], capsys)
    assert code == 2 and f"config key 'model.init_from': {export} is incomplete: no weights.yaml" in _one_line_error(err)
    assert not started


def test_the_deepspeed_json_is_found_from_any_working_directory(args, tmp_path, monkeypatch, started, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = _main(Stage1, args, capsys)
    assert code == 0 and len(started) == 1, err


def _earlier_run(out: Path, args: list[str], capsys) -> None:
    """A run that wrote its config and a complete checkpoint at step 2 (training itself replaced)."""
    assert _main(Stage1, args, capsys)[0] == 0
    step = out / "checkpoints" / "step-0000002"
    step.mkdir(parents=True)
    (step / COMPLETE).write_text("2")
    (out / "checkpoints" / "latest").write_text(step.name)


def test_resume_under_a_config_that_changes_results_is_refused(args, tmp_path, started, capsys, caplog) -> None:
    caplog.set_level(logging.INFO, logger="training.preflight")
    out = tmp_path / "run"
    _earlier_run(out, args, capsys)
    assert yaml.safe_load((out / "config.yaml").read_text())["run"]["output_dir"] == str(out)
    code, err = _main(Stage1, [*args, "--set", "diffusion.snr_gamma=0", "--set", "data.min_ref_gap=5"], capsys)
    line = _one_line_error(err)
    assert code == 2 and "holds checkpoints of a run with a different config" in line
    assert "data.min_ref_gap: 30 -> 5" in line and "diffusion.snr_gamma: 5.0 -> 0.0" in line
    # Step counts, logging and the optimizer may change; the change is logged and recorded.
    code, err = _main(Stage1, [*args, "--set", "run.max_steps=9", "--set", "optim.lr=2e-5"], capsys)
    assert code == 0 and len(started) == 2, err
    assert "does not change results: run.max_steps: 30000 -> 9" in caplog.text
    assert yaml.safe_load((out / "config.yaml").read_text())["run"]["max_steps"] == 9


def test_a_fresh_start_into_a_used_folder_needs_overwrite(args, tmp_path, started, capsys) -> None:
    out = tmp_path / "run"
    _earlier_run(out, args, capsys)
    (out / "export").mkdir()
    code, err = _main(Stage1, [*args, "--set", "run.resume=none"], capsys)
    line = _one_line_error(err)
    assert code == 2 and f"{out} holds an earlier run (checkpoints up to step 2)" in line and "run.overwrite=true" in line
    assert (out / "checkpoints" / "step-0000002" / COMPLETE).exists()
    code, err = _main(Stage1, [*args, "--set", "run.resume=none", "--set", "run.overwrite=true",
                                 "--set", "diffusion.snr_gamma=0"], capsys)
    assert code == 0, err
    assert not (out / "checkpoints").exists() and not (out / "export").exists()
    assert yaml.safe_load((out / "config.yaml").read_text())["diffusion"]["snr_gamma"] == 0


def test_every_training_entry_point_prints_its_config(capsys) -> None:
    from orchestration import deepspeed_launch

    for stage in (Stage1, Stage2):
        assert loop.main(stage, ["--print-config"]) == 0
        out = capsys.readouterr().out
        assert "| `run.overwrite` | `False` |" in out and "| `data.shards` |" in out
    assert deepspeed_launch.main(["stage2", "--print-config"]) == 0  # no cluster is contacted
    assert "| `model.init_from` |" in capsys.readouterr().out


def _as_curated_without_separator(shard: str, dst: Path) -> Path:
    """`shard` as curation writes it without a vocal separator: no vocals.wav, `vocal_separator` unset."""
    with tarfile.open(shard) as src, tarfile.open(dst, "w") as out:
        for info in src:
            if info.name.endswith("." + schema.KEY_VOCALS):
                continue
            data = src.extractfile(info).read()
            if info.name.endswith("." + schema.KEY_META):
                data = dataclasses.replace(schema.ClipMeta.from_json(data), vocal_separator=None).to_json()
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return dst


def test_exports_separate_vocals_as_the_shards_were_curated(args, curated_shards, tmp_path, started, capsys,
                                                            caplog) -> None:
    separated = curated_shards["train"][0]
    assert schema.ClipMeta.from_json(next(iter(wds.WebDataset(separated, shardshuffle=False)))["json"]).vocal_separator
    mixture = str(_as_curated_without_separator(separated, tmp_path / "mixture.tar"))

    def behaviour(shards: list[str], *sets: str) -> dict:
        extra = [a for s in (f"data.shards=[{','.join(shards)}]", *sets) for a in ("--set", s)]
        assert _main(Stage1, [*args, *extra], capsys)[0] == 0
        return started[-1].model.behaviour

    assert "separate_vocals" not in behaviour([separated])  # the bases' behaviour separates already
    assert behaviour([mixture]) == {"separate_vocals": False}
    assert behaviour([mixture], "model.behaviour={separate_vocals: true}") == {"separate_vocals": True}
    caplog.set_level(logging.WARNING)
    assert "separate_vocals" not in behaviour([separated, mixture])
    assert "mix clips curated with and without vocal separation" in caplog.text
