"""`hallo-weights`: pretrained bases and weights folders, one command (`python -m model.weights_cli` in a clone).
The arguments are parsed, and `--help` answered, before torch is imported.

    hallo-weights fetch --to BASE                 the real bases and Hallo's net.pth (sizes listed first)
    hallo-weights init --base BASE --to WEIGHTS   a weights folder from the bases
    hallo-weights hallo --base BASE --to WEIGHTS  Hallo's released net.pth converted
    hallo-weights bundle WEIGHTS                  copy the bases in: the folder generates anywhere
    hallo-weights check WEIGHTS                   check a folder (local or hub id) and its bases
    hallo-weights push WEIGHTS owner/name         upload a weights folder to the Hugging Face hub
    hallo-weights pull owner/name[@rev] --to DIR  download one
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from foundation.config import ConfigError, describe_markdown
from model.presets import PRESETS, get_preset

TINY_SUCCESSOR = "`hallo-standins --to BASE` (python -m examples.standins; docs/install.md)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hallo-weights", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--print-config", action="store_true", help="print every weights.yaml key with its default and exit")
    sub = parser.add_subparsers(dest="command")
    fetch = sub.add_parser("fetch", help="download the real bases and Hallo's net.pth (needs internet; sizes listed first)")
    fetch.add_argument("--to", type=Path, required=True)
    fetch.add_argument("--also", action="append", default=[], metavar="NAME",
                       help="also an audio encoder (chinese-wav2vec2-base) into BASE/audio_encoders/NAME, or whisper "
                            "(spoken-language identification) into BASE/whisper (repeatable)")
    # The stand-ins are an example's, not the library's: the old subcommand names its successor.
    sub.add_parser("tiny", help=f"moved: {TINY_SUCCESSOR}")
    init = sub.add_parser("init", help="build a weights folder for generation/training from a base folder")
    init.add_argument("--base", type=Path, required=True)
    init.add_argument("--preset", choices=sorted(PRESETS), default="sd15")
    init.add_argument("--to", type=Path, required=True)
    init.add_argument("--audio-encoder", type=Path, help="audio encoder folder the model is built for and records "
                                                         "(default: BASE/wav2vec2)")
    hallo = sub.add_parser("hallo", help="convert Hallo's released net.pth into a weights folder")
    hallo.add_argument("--base", type=Path, required=True, help="base folder: unet/config.json, wav2vec2/, vae/, insightface/")
    hallo.add_argument("--net", type=Path, help="Hallo's net.pth (default: BASE/hallo/net.pth)")
    hallo.add_argument("--to", type=Path, required=True, help="new weights folder")
    hallo.add_argument("--audio-encoder", type=Path, help="record this audio encoder folder (12 x 768, e.g. "
                                                          "chinese-wav2vec2-base) instead of BASE/wav2vec2")
    hallo.add_argument("--preset", choices=sorted(PRESETS), default="sd15",
                       help="resolution and clip sizes recorded for generation (the modules' sizes come from the files)")
    sub.add_parser("bundle", help="copy the bases into WEIGHTS/bases/ so the folder generates anywhere").add_argument(
        "weights", help="weights folder (written by training or `init`)")
    sub.add_parser("check", help="check that WEIGHTS and the bases it names are complete").add_argument(
        "weights", help="weights folder or hub id")
    push = sub.add_parser("push", help="upload a weights folder to the Hugging Face hub (HF_TOKEN or `hf auth login`)")
    push.add_argument("weights", help="weights folder whose bases are bundled or named by hub id")
    push.add_argument("repo", help="hub model id owner/name (created if missing)")
    push.add_argument("--private", action="store_true", help="create the repository private")
    pull = sub.add_parser("pull", help="download a weights folder from the Hugging Face hub")
    pull.add_argument("repo", help="hub model id owner/name[@revision]")
    pull.add_argument("--to", type=Path, required=True, help="local folder")
    return parser


def run(args: argparse.Namespace) -> str:
    """Do the command; its one-line result."""
    if args.command == "fetch":
        from model.pretrained import fetch

        fetch(args.to, tuple(args.also))
    elif args.command == "init":
        from model.pretrained import init_weights

        init_weights(args.base, get_preset(args.preset), args.to, args.audio_encoder)
    elif args.command == "hallo":
        from model.pretrained import base_paths, convert_hallo

        convert_hallo(args.base, args.net or base_paths(args.base)["hallo"], get_preset(args.preset), args.to,
                      args.audio_encoder)
    elif args.command in ("bundle", "check"):
        from model.weights import bundle, check_weights_folder

        bundle(args.weights) if args.command == "bundle" else check_weights_folder(args.weights, "WEIGHTS")
        return f"{args.weights}: {'self-contained' if args.command == 'bundle' else 'complete'}"
    elif args.command == "push":
        from model.weights import push

        return f"pushed {args.weights} to {push(args.weights, args.repo, args.private)}"
    else:
        from model.weights import pull

        return f"pulled {args.repo} into {pull(args.repo, args.to)}"
    return f"wrote {args.to}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["tiny"]:
        print(f"error: `hallo-weights tiny` moved: use {TINY_SUCCESSOR}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.print_config:
        from model.weights import WeightsIndex

        print(describe_markdown(WeightsIndex))
        return 0
    if args.command is None:
        parser.error("a command is required")
    from model.hallo_checkpoint import HalloCheckpointError
    from model.pretrained import FetchError

    try:
        print(run(args))
    except (ConfigError, FetchError, HalloCheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
