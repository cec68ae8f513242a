"""The `keras-inception` command line: one module per group of subcommands."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Each module defines `register(subparsers)`, adding subcommands whose `func(args)`
# returns an exit code.
COMMAND_MODULES = [
    "keras_inception.cli.core",
    "keras_inception.cli.convert",
    "keras_inception.cli.train",
    "keras_inception.cli.export",
    "keras_inception.cli.benchmark",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-inception",
        description=(
            "Inception-v4, Inception-ResNet-v1 and Inception-ResNet-v2 for Keras 3: "
            "inspect, predict, convert weights, train and export."
        ),
        epilog="Run `keras-inception COMMAND --help` for the options of a command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    # argparse fills a `nargs="*"` list before the options that follow it
    # (`predict MODEL --weights W IMAGE...`): give the trailing files back to it.
    if extras and isinstance(getattr(args, "images", None), list):
        if any(e.startswith("-") for e in extras):
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        args.images += extras
    elif extras:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        # Expected failures (bad arguments, missing files, offline) get one clear line.
        print(f"keras-inception {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
