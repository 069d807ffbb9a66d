"""`pip install .` (not editable) into a fresh virtualenv, then the hallo-* commands run the demo's steps from a
directory outside the clone, with the configs the wheel carries.

The new environment reuses this interpreter's installed dependencies through a .pth line (a path entry: the
.pth files of that directory, such as an editable install's finder, are not run), and PYTHONPATH is unset, so
the project's own code can come only from what pip installed."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("hallo-curate", "hallo-cache-latents", "hallo-train", "hallo-generate", "hallo-evaluate", "hallo-weights",
            "hallo-submit", "hallo-demo", "hallo-standins")
SHIPPED = ("pyproject.toml", "README.md", "curation", "training", "model", "orchestration", "foundation", "examples", "configs")


def _run(cmd: list, cwd: Path, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    """(bin folder of a fresh venv holding a non-editable install, its environment)."""
    work = tmp_path_factory.mktemp("install")
    source = work / "source"  # a copy: pip's in-tree build writes build/ and *.egg-info next to pyproject.toml
    source.mkdir()
    for name in SHIPPED:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source / name)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "reused_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
          str(source)], work, env)
    return venv / "bin", env


def test_the_wheel_installs_the_packages_the_commands_and_the_configs(installed, tmp_path):
    bin_dir, env = installed
    where = _run([bin_dir / "python", "-c", "import model, foundation.project as p; print(model.__file__); "
                  "print(p.configs_dir()); print(p.is_clone())"], tmp_path, env).stdout.split()
    site = str(next((bin_dir.parent / "lib").glob("python3*/site-packages")))
    assert where[0].startswith(site) and where[1] == f"{site}/foundation/configs" and where[2] == "False"
    assert all((Path(where[1]) / name).is_file() for name in ("deepspeed_zero2.json", "stage1.yaml", "demo/stage1.yaml",
                                                               "learn/stage2.yaml", "generate.yaml"))
    for command in COMMANDS:
        check = [bin_dir / "python", "-c", f"import sys, runpy; sys.argv = ['{command}', '--help']\n"
                 f"from importlib.metadata import entry_points\n"
                 f"(ep,) = [e for e in entry_points(group='console_scripts') if e.name == '{command}']\n"
                 f"try: ep.load()()\nexcept SystemExit: pass\n"
                 f"assert 'torch' not in sys.modules and 'diffusers' not in sys.modules"]
        assert "usage:" in _run(check, tmp_path, env).stdout, command
        assert (bin_dir / command).is_file()


@pytest.mark.slow
def test_the_installed_commands_run_the_demo_steps_from_another_directory(installed, fixture_by_variant, tmp_path):
    bin_dir, env = installed
    base, curated, latents, run = tmp_path / "base", tmp_path / "curated", tmp_path / "latents", tmp_path / "run"
    _run([bin_dir / "hallo-standins", "--to", base], tmp_path, env)
    (tmp_path / "list.txt").write_text(f"{fixture_by_variant['in_sync'].path}\n")
    _run([bin_dir / "hallo-curate", "--source", "list.txt", "--out", curated, "--num-cpus", "1",
          "--set", f"annotations.wav2vec2_dir={base / 'wav2vec2'}",
          "--set", f"annotations.insightface_dir={base / 'insightface' / 'models'}",
          "--set", "faces.output_size=128"], tmp_path, env)
    _run([bin_dir / "hallo-cache-latents", "--shards", f"{curated}/shards/*.tar", "--out", latents, "--num-cpus", "1",
          "--set", f"encode.vae_dir={base / 'vae'}", "--set", "encode.resolution=64"], tmp_path, env)
    # configs/demo/stage1.yaml is not in tmp_path: the copy installed with the package is read, and so is its
    # default run.deepspeed_config (configs/deepspeed_zero2.json).
    trained = _run([bin_dir / "hallo-train", "stage1", "--config", "configs/demo/stage1.yaml",
                    "--set", f"data.shards=[{curated}/shards/*.tar]", "--set", f"data.latents={latents}",
                    "--set", f"model.pretrained_dir={base}", "--set", f"run.output_dir={run}",
                    "--set", "run.max_steps=2", "--set", "run.validate_every=0"], tmp_path, env)
    assert "stage1 done: 2 steps" in trained.stderr and (run / "export" / "model_index.json").is_file()
    _run([bin_dir / "hallo-generate", "--weights", run / "export", "--image", ROOT / "examples/assets/astronaut.jpg",
          "--audio", fixture_by_variant["in_sync"].path, "--out", "talk.mp4", "--steps", "1",
          "--set", "progress=false"], tmp_path, env)
    assert (tmp_path / "talk.mp4").stat().st_size > 0
