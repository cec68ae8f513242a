"""`train` and `evaluate` subcommands."""

from __future__ import annotations

import argparse
import json
import os

from keras_inception.cli.arguments import (
    add_image_size_option,
    add_model_option,
    check_weights_file,
    crop_fraction,
    non_negative_int,
    positive_float,
    positive_int,
)
from keras_inception.train.config import (
    PRECISIONS,
    RECIPES,
    SAMPLE_NAME,
    STRATEGIES,
    TFDS_PREFIX,
    check_stage1_epochs,
)


def _check_data(data: str) -> None:
    """`--data` that names a folder: it exists (the sample and tfds:NAME are checked later)."""
    if data == SAMPLE_NAME or data.startswith(TFDS_PREFIX):
        return
    if not os.path.isdir(os.path.expanduser(data)):
        raise FileNotFoundError(
            f"--data {data!r} is not a folder; expected {SAMPLE_NAME!r}, 'tfds:NAME' or an "
            "existing folder of images.")


def check_train(args: argparse.Namespace) -> None:
    """Before TensorFlow is imported (nothing is loaded or recorded): the stages fit in
    `--epochs`, the weights file and the data folder exist, and `--out` is a folder (or can
    be created) this process can write into."""
    from keras_inception.files import check_writable_folder

    check_stage1_epochs(args.stage1_epochs, args.epochs,
                        lambda name, value: f"--{name.replace('_', '-')} {value}")
    check_weights_file(args.weights)
    _check_data(args.data)
    out = os.path.abspath(args.out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise NotADirectoryError(
            f"--out {args.out!r} is a file; --out must be a folder (created if missing).")
    check_writable_folder(out, "--out", args.out)


def check_evaluate(args: argparse.Namespace) -> None:
    """Before TensorFlow is imported: the model file and the data folder exist."""
    if not os.path.isfile(args.model):
        raise FileNotFoundError(
            f"--model {args.model!r} not found: no such file; expected a .keras file written "
            "by `keras-inception train`.")
    _check_data(args.data)


def cmd_train(args: argparse.Namespace) -> int:
    import dataclasses

    from keras_inception.train import TrainConfig, train

    # Every option is the TrainConfig field of its name (--image-size: image_size).
    config = TrainConfig(**{field.name: getattr(args, field.name)
                            for field in dataclasses.fields(TrainConfig)
                            if hasattr(args, field.name)})
    train(config)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from keras_inception.train import evaluate, summary

    report = evaluate(args.model, args.data, data_dir=args.data_dir, batch_size=args.batch_size,
                      crop_pct=args.crop_pct, split=args.split,
                      max_per_class=args.max_per_class)
    print(json.dumps(report) if args.json else summary(report))
    return 0


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="flowers_sample",
                   help="'flowers_sample' (embedded), 'tfds:NAME' or a folder "
                        "ROOT/<split>/<class>/* or ROOT/<class>/* (default flowers_sample)")
    p.add_argument("--data-dir", default=None, help="tensorflow-datasets data folder (tfds:NAME)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="batch size (default 32)")


def register(sub: argparse._SubParsersAction) -> None:
    _register_train(sub)
    _register_evaluate(sub)


def _register_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="fine-tune or train a network on an image dataset",
        description="Train with the `transfer` (two-stage fine-tuning) or `paper` (from "
                    "scratch, section 4 of the paper) recipe. Rerun with the same --out to "
                    "resume an interrupted run.",
    )
    add_model_option(p, files=False, required=False, default="inception_resnet_v2",
                     help_suffix=" (default inception_resnet_v2)")
    _add_data_arguments(p)
    p.add_argument("--download", action="store_true",
                   help="allow downloading a tfds:NAME dataset that is not prepared yet")
    add_image_size_option(p, help_text="input size (default: the network's, 299; FaceNet 160)")
    p.add_argument("--epochs", type=positive_int, default=10, help="total epochs (default 10)")
    p.add_argument("--weights", default=None,
                   help="a preset ('imagenet'; for facenet 'ms_celeb_1m', 'vggface2', "
                        "'casia_webface'), 'none', a weights file, or 'auto': the best that can "
                        "be had here (ImageNet IR-v2, else the FaceNet backbone through the "
                        "package index, else from scratch; --model is then chosen with it). "
                        "Default: imagenet for transfer, none for paper")
    _add_recipe_options(p)
    _add_run_options(p)
    p.set_defaults(func=cmd_train, check=check_train)


def _add_recipe_options(p: argparse.ArgumentParser) -> None:
    """How `train` trains: the recipe and its stages, precision, compilation."""
    p.add_argument("--recipe", choices=RECIPES, default="transfer")
    p.add_argument("--mixed-precision", choices=PRECISIONS, default="none")
    p.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None,
                   help="XLA compilation (default: Keras decides, jit_compile='auto')")
    p.add_argument("--learning-rate", type=positive_float, default=None,
                   help="override the recipe's base learning rate")
    p.add_argument("--stage1-epochs", type=non_negative_int, default=None,
                   help="transfer recipe: epochs of the head-only stage (default half; 0 "
                        "fine-tunes from the first epoch)")
    p.add_argument("--max-per-class", type=positive_int, default=None,
                   help="use at most this many images per class and split (quick runs)")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                   help="random resized crops and flips while training (default on)")
    p.add_argument("--feature-views", type=non_negative_int, default=None,
                   help="transfer recipe, stage 1: train the head on cached backbone features "
                        "of N views per image (1, the default: the evaluation crop; N > 1: "
                        "augmented views; 0: no cache, the backbone runs every epoch)")
    p.add_argument("--fine-tune-cache", action=argparse.BooleanOptionalAction, default=True,
                   help="transfer recipe, stage 2: fine-tune the top blocks on the cached "
                        "activations below them, of the same views as stage 1 (default on; "
                        "--no-fine-tune-cache runs the backbone on augmented images every "
                        "epoch)")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """Where `train` runs and writes: devices, seed, output folder."""
    p.add_argument("--strategy", choices=STRATEGIES, default="auto",
                   help="devices to train on: all GPUs of this machine (mirrored), the machines "
                        "of TF_CONFIG (multi_worker), a TPU, or one device (none); auto picks "
                        "multi_worker with TF_CONFIG, else mirrored with 2+ GPUs (default auto). "
                        "--batch-size is per replica")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True,
                   help="output folder (created; rerun the same command to resume; a finished "
                        "run is left as it is)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in --out (finished, or another one) instead of refusing")


def _register_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="accuracy of a trained .keras model on a dataset")
    p.add_argument("--model", required=True, metavar="MODEL.keras",
                   help="a .keras file written by `keras-inception train`")
    _add_data_arguments(p)
    p.add_argument("--split", choices=("val", "train"), default="val")
    p.add_argument("--crop-pct", type=crop_fraction, default=None,
                   help="center-crop fraction (default: the training run's, else 0.875)")
    p.add_argument("--max-per-class", type=positive_int, default=None,
                   help="use at most this many images per class (quick checks)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_evaluate, check=check_evaluate)
