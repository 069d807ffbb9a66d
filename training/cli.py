"""`hallo-train stage1|stage2 [--config ...] [--set ...]`: one training process of a stage.

The arguments are parsed (and `--help` answered) before torch is imported. One process trains on one
device; under torchrun it is one rank of several. For several GPUs use DeepSpeed's launcher:
`deepspeed --module training.stage1 --config ...` (installed) or `deepspeed training/stage1.py ...`
(from a clone), or `hallo-submit train stage1` on a Ray cluster.
"""
from __future__ import annotations

import importlib
import sys
from typing import Optional

from training.arguments import parse_args

STAGES = {"stage1": "Stage1", "stage2": "Stage2"}  # module training.<key> defines class <value>


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in STAGES:
        asked = bool(argv) and argv[0] in ("-h", "--help")
        print(f"usage: hallo-train {{{','.join(STAGES)}}} [--config YAML] [--set KEY=VALUE ...] [--print-config]\n\n"
              f"{__doc__}", file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    name = argv[0]
    cfg = parse_args(name, argv[1:], f"hallo-train {name}")
    if cfg is None:  # --print-config (and --help, which exits) end here, torch-free
        return 0
    from training.loop import run

    return run(getattr(importlib.import_module(f"training.{name}"), STAGES[name]), cfg)


if __name__ == "__main__":
    sys.exit(main())
