"""The `keras-inception` command line: one module per group of subcommands."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import tempfile

# Each module defines `register(subparsers)`, adding subcommands whose `func(args)`
# returns an exit code; a subcommand's `check(args)`, when it has one, runs first, before
# TensorFlow or Keras is imported: missing inputs, a missing weights file, an existing or
# unwritable output and options that do not apply are refused at once, before any work.
COMMAND_MODULES = [
    "keras_inception.cli.core",
    "keras_inception.cli.convert",
    "keras_inception.cli.embeddings",
    "keras_inception.cli.train",
    "keras_inception.cli.export",
    "keras_inception.cli.benchmark",
    "keras_inception.cli.explain",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-inception",
        description=(
            "Inception-v4, Inception-ResNet-v1 and Inception-ResNet-v2 for Keras 3: "
            "inspect, predict, explain, convert weights, train and export."
        ),
        epilog="Run `keras-inception COMMAND --help` for the options of a command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


# TensorFlow's C++ start-up notices, printed before its logging is configured (so
# TF_CPP_MIN_LOG_LEVEL cannot silence them): informational, and they bury our output.
_STARTUP_NOISE = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",
    # The CUDA build of TensorFlow (keras-hub's tensorflow-text brings it) on a machine
    # without a GPU.
    "Could not find cuda drivers on your machine",
    "failed call to cuInit",
)


def _import_tensorflow_quietly() -> None:
    """Imports TensorFlow (when it is the backend) with its start-up notices filtered;
    any other line it prints is passed on."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend != "tensorflow" or "tensorflow" in sys.modules:
        return
    if importlib.util.find_spec("tensorflow") is None:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            # Listing the devices initializes CUDA now, while the notices are captured.
            importlib.import_module("tensorflow").config.list_physical_devices()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        for line in captured.read().decode("utf-8", "replace").splitlines():
            if line.strip() and not any(noise in line for noise in _STARTUP_NOISE):
                print(line, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    check = getattr(args, "check", None)
    if check is not None:
        code = _run(args, check)
        if code:
            return code
    _import_tensorflow_quietly()
    return _run(args, args.func)


def _run(args: argparse.Namespace, step) -> int:
    """`step(args)`'s exit code; an expected failure is one line on stderr and exit code 2."""
    try:
        return int(step(args) or 0)
    except (ValueError, OSError, RuntimeError, ImportError) as e:
        # Expected failures (bad arguments or files, missing packages, offline) get one
        # clear line and exit code 2; FileNotFoundError, FileExistsError and
        # PermissionError are OSErrors.
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"keras-inception {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"keras-inception {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
