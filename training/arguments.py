"""The arguments of one training process of a stage: --config, --set, --print-config; torch-free, so that
`--help` is answered before torch loads."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from foundation.config import ConfigError, describe_markdown, load_config
from foundation.project import project_file
from training.config import TrainConfig


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
