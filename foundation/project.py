"""Where the project's bundled files are: configs/ of a clone, or the copy a wheel installs.

A clone (or an editable install) reads configs/ next to pyproject.toml; `pip install .` puts the same
files into the installed package foundation/configs/ (pyproject.toml maps it), so a default such as
`run.deepspeed_config: configs/deepspeed_zero2.json` works from any working directory either way.
"""
from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
CLONE = _PACKAGE.parent  # the repository root when running from a clone


def is_clone() -> bool:
    """Whether the code runs from a checkout of the repository (not from an installed wheel)."""
    return (CLONE / "pyproject.toml").is_file() and (CLONE / "configs").is_dir()


def configs_dir() -> Path:
    return CLONE / "configs" if is_clone() else _PACKAGE / "configs"


def project_file(name: str | Path) -> Path:
    """A bundled file named as from the repository root (`configs/stage1.yaml`); `configs/...` is found in
    the installed copy too."""
    parts = Path(name).parts
    if parts and parts[0] == "configs":
        return configs_dir().joinpath(*parts[1:])
    return CLONE / name
