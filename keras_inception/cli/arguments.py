"""Options shared by the subcommands, and argparse types that check values up front.

A bad value is refused by argparse itself, before anything is loaded: one line
naming the option, the value and what is allowed, and exit code 2. Nothing here
imports Keras, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from keras_inception.registry import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, model_names

# From the registry, which knows the names and sizes without importing Keras.
MODEL_CHOICES = tuple(model_names())


def _number(kind: type, check: Callable[[float], bool], allowed: str) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {allowed}; received {text!r}") from None
        if value != value or not check(value):  # NaN fails every check
            raise argparse.ArgumentTypeError(f"expected {allowed}; received {text!r}")
        return value

    parse.__name__ = allowed  # argparse names the type in some messages
    return parse


positive_int = _number(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
image_size = _number(int, lambda v: MIN_IMAGE_SIZE <= v <= MAX_IMAGE_SIZE,
                     f"an integer in {MIN_IMAGE_SIZE}-{MAX_IMAGE_SIZE}")
positive_float = _number(float, lambda v: 0 < v < float("inf"), "a positive number")
crop_fraction = _number(float, lambda v: 0 < v <= 1, "a number in (0, 1]")


def add_model_option(
    parser: argparse.ArgumentParser, *, files: bool, required: bool = True,
    default: str | None = None, help_suffix: str = "",
) -> None:
    """`--model`: the one way every subcommand names its network (or a `.keras` file)."""
    what = f"one of {', '.join(MODEL_CHOICES)}" + (", or a .keras file" if files else "")
    parser.add_argument(
        "--model", required=required, default=default, metavar="MODEL",
        choices=None if files else MODEL_CHOICES, help=what + help_suffix,
    )


def add_image_size_option(parser: argparse.ArgumentParser, default: int | None = None,
                          help_text: str = "input height and width (default 299)") -> None:
    parser.add_argument("--image-size", type=image_size, default=default, help=help_text)
