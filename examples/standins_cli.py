"""`hallo-standins --to BASE` (`python -m examples.standins`): the stand-in bases, offline. Its own file so that
`--help` answers before torch is imported (examples/standins.py builds the modules)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from model.presets import PRESETS, get_preset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hallo-standins", description="write stand-in bases in the layout "
                                     "`hallo-weights fetch` writes (offline; random but for the tiny VAE)")
    parser.add_argument("--to", type=Path, required=True)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="sizes (sd15: full-size random weights)")
    parser.add_argument("--language", default="", help="also write BASE/whisper: a language-identification stand-in "
                                                       "that always detects this language (en, zh, ...)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from examples.standins import write_standins  # torch.onnx export machinery, only here

    write_standins(get_preset(args.preset), args.to, language=args.language)
    print(f"wrote {args.to}")
    return 0
