"""`hallo-train stage1|stage2 [--config ...] [--set ...]`: one training process of a stage.

The arguments are parsed (and `--help` answered) before torch is imported. One process trains on one
device; under torchrun it is one rank of several. For several GPUs use DeepSpeed's launcher:
`deepspeed --module training.stage1 --config ...` (installed) or `deepspeed training/stage1.py ...`
(from a clone), or `hallo-submit train stage1` on a Ray cluster.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Optional

from foundation.config import ConfigError, describe_markdown, load_config
from foundation.project import project_file
from training.config import TrainConfig

STAGES = {"stage1": "Stage1", "stage2": "Stage2"}  # module training.<key> defines class <value>


def parse_args(name: str, argv: Optional[list[str]], prog: Optional[str] = None) -> Optional[TrainConfig]:
    """The config from defaults < --config < --set (exit 2 on a bad one); None for --print-config."""
    parser = argparse.ArgumentParser(
        prog=prog or f"deepspeed training/{name}.py",
        description=f"Hallo {name} training. Also runs as `hallo-train {name}` or `python training/{name}.py` "
        "(one process) or under torchrun. Resumes from the latest complete checkpoint in run.output_dir.",
    )
    parser.add_argument("--config", type=Path, help=f"YAML config, e.g. configs/{name}.yaml (a configs/... path that "
                        "the working directory lacks names the copy bundled with the package)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set run.max_steps=10 (repeatable)")
    parser.add_argument("--print-config", action="store_true", help="print every config key with its default and exit")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.print_config:
        print(describe_markdown(TrainConfig))
        return None
    config = args.config
    if config is not None and not config.exists() and project_file(config).is_file():
        config = project_file(config)
    try:
        return load_config(TrainConfig, config, args.overrides)
    except ConfigError as err:
        parser.exit(2, f"error: {err}\n")


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in STAGES:
        asked = bool(argv) and argv[0] in ("-h", "--help")
        print(f"usage: hallo-train {{{','.join(STAGES)}}} [--config YAML] [--set KEY=VALUE ...] [--print-config]\n\n"
              f"{__doc__}", file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    name, rest = argv[0], argv[1:]
    if parse_args(name, rest, f"hallo-train {name}") is None:  # --help and --print-config end here, torch-free
        return 0
    from training.loop import main as train_main

    stage = getattr(importlib.import_module(f"training.{name}"), STAGES[name])()
    return train_main(stage, rest)


if __name__ == "__main__":
    sys.exit(main())
