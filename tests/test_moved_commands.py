"""A command spelling that moved still answers: one line naming its successor, exit 2, and the successor runs."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("old, args", [("training.cache_latents", []), ("model.pretrained", ["fetch", "--to", "base"]),
                                       ("model.weights", ["check", "weights"]), ("orchestration.demo", [])])
def test_an_old_spelling_names_its_successor_and_exits_2(old: str, args: list[str]) -> None:
    moved = subprocess.run([sys.executable, "-m", old, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert moved.returncode == 2 and moved.stdout == "", moved.stderr[-2000:]
    (line,) = moved.stderr.strip().splitlines()
    assert line.startswith(f"error: `python -m {old}` moved: use ") and " ".join(args) in line
    successor = re.search(r"`python -m ([\w.]+)`", line.split("use ", 1)[1])[1]
    helped = subprocess.run([sys.executable, "-m", successor, "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert helped.returncode == 0 and "usage:" in helped.stdout, helped.stderr[-2000:]
