"""Options shared by the subcommands, and argparse types that check values up front.

A bad value is refused by argparse itself, before anything is loaded: one line
naming the option, the value and what is allowed, and exit code 2. Nothing here
imports Keras, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence

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


def add_classifier_input_options(parser: argparse.ArgumentParser) -> None:
    """`--weights`, `--image-size` and `--crop-pct`: how `predict` and `explain` build a model
    name and crop its images."""
    parser.add_argument("--weights", default=None,
                        help="'imagenet' (or another preset) or a weights file, for a model name")
    add_image_size_option(parser)
    parser.add_argument("--crop-pct", type=crop_fraction, default=None,
                        help="center-crop fraction (default: the one the model file carries; "
                             "for a preset, the preset's; else 0.875)")


def add_image_size_option(parser: argparse.ArgumentParser, default: int | None = None,
                          help_text: str = "input height and width (default 299)") -> None:
    parser.add_argument("--image-size", type=image_size, default=default, help=help_text)


# --- checks that run before TensorFlow or Keras is imported (each subcommand's `check`) ---
# A refusal takes a fraction of a second and nothing has been built, computed or written.


def check_input_files(paths: list[str], what: str = "IMAGE",
                      expected: str = "an image file") -> None:
    """Every input is an existing file: one line naming the first that is not."""
    for path in paths:
        if os.path.isdir(path):
            raise IsADirectoryError(f"{what} {path!r} is a folder; expected {expected}.")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{what} {path!r} not found: no such file; expected "
                                    f"{expected}.")


def check_weights_file(weights: str | None, option: str = "--weights") -> None:
    """`--weights` that names a file (a path, or a name ending .h5, .keras, .pt...) must
    exist; preset names, 'none' and 'auto' are checked where the model is built."""
    from keras_inception.files import looks_like_path

    if weights is not None and looks_like_path(weights) and not os.path.isfile(weights):
        raise FileNotFoundError(
            f"{option} {weights!r} not found: no such file; expected a preset name "
            "(`keras-inception weights` lists them), 'none' or an existing weights file.")


def input_paths(args: argparse.Namespace) -> list[str]:
    """The files and folders a command reads, which its `--out --overwrite` never replaces:
    a `--model` file, a `--weights` file, IMAGE / CROP files, `--calibration-data`, SRC."""
    from keras_inception.files import looks_like_path

    model, weights = getattr(args, "model", None), getattr(args, "weights", None)
    paths = [getattr(args, "src", None), getattr(args, "calibration_data", None),
             model if model not in MODEL_CHOICES else None,
             weights if looks_like_path(weights) else None, *(getattr(args, "images", None) or [])]
    return [path for path in paths if path]


def check_output(path: str, *, overwrite: bool, suffix: str | None = None,
                 option: str = "--out", command: str | None = None, kind: str | None = None,
                 inputs: Sequence[str] = ()) -> str:
    """An output file or folder (`kind`) that can be written: not there, or `--overwrite`
    and `command`'s own output that is none of `inputs` (`files.check_replaceable`); not
    inside a file, in a folder this process can write into. Returns the absolute path."""
    from keras_inception.files import check_destination, check_writable_parent

    path = check_destination(path, overwrite=overwrite, suffix=suffix, arg=option,
                             command=command, kind=kind, inputs=inputs)
    check_writable_parent(path, option)
    return path


def check_model_file(args: argparse.Namespace, option: str = "--model") -> None:
    """`--model` (or `--tflite`) given as a saved model: the file exists, and the options
    that describe a model name (`--weights`, `--image-size`) are refused, since the file
    holds its weights and input size. A model name passes (`predict` and `export`)."""
    path = getattr(args, option.lstrip("-"))
    if path is None or (option == "--model" and path in MODEL_CHOICES):
        return
    if option == "--model" and not path.endswith(".keras"):
        raise ValueError(f"`--model` must be one of {', '.join(MODEL_CHOICES)} or a .keras "
                         f"file; received --model {path!r}.")
    given = [(name, value) for name, value in (("--weights", getattr(args, "weights", None)),
                                               ("--image-size", getattr(args, "image_size", None)))
             if value is not None]
    if given:
        names = " and ".join(f"`{name}`" for name, _ in given)
        received = " ".join(f"{name} {value}" for name, value in given)
        raise ValueError(
            f"{names} {'apply' if len(given) > 1 else 'applies'} to model names "
            f"({', '.join(MODEL_CHOICES)}), not to a saved model, which holds its weights and "
            f"input size; received {option} {path!r} {received}.")
    if not os.path.isfile(path):
        kind = ".keras" if option == "--model" else ".tflite"
        raise FileNotFoundError(f"{option} {path!r} not found: no such file; expected an "
                                f"existing {kind} file.")
