"""Layers import one way: examples -> orchestration -> training -> model, curation -> foundation (README, Curation).

Read from the source with `ast`, lazy imports inside functions included. Only entry points that sit on
top of their package (`python -m curation.run`, `python -m training.latent_cache`) may reach up to the
orchestration that schedules their work.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("foundation", "curation", "model", "training", "orchestration", "examples")
FORBIDDEN = {  # package -> packages it must never import
    "foundation": {"curation", "model", "training", "orchestration", "examples"},
    "curation": {"model", "training", "orchestration", "examples"},
    "model": {"curation", "training", "orchestration", "examples"},
    "training": {"curation", "orchestration", "examples"},
    "orchestration": {"examples"},
    "examples": set(),  # the demo, fixtures and stand-ins: on top, they may import every layer
}
ENTRY_POINTS = {"curation/run.py": {"orchestration"}, "training/latent_cache/cli.py": {"orchestration"}}


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_no_layer_above_it(package: str) -> None:
    wrong = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        bad = imported_packages(path) & (FORBIDDEN[package] - ENTRY_POINTS.get(rel, set()))
        if bad:
            wrong[rel] = sorted(bad)
    assert not wrong, f"imports against the layers: {wrong}"


def test_the_check_sees_lazy_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from orchestration.ray_setup import init_ray\n    import model.net\n")
    assert imported_packages(source) == {"orchestration", "model"}
