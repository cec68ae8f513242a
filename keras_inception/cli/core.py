"""`summary`, `predict`, `weights` and `demo` subcommands."""

from __future__ import annotations

import argparse
import os

MODEL_CHOICES = ("inception_v4", "inception_resnet_v1", "inception_resnet_v2")


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image-size", type=int, default=None,
                        help="input height and width (default 299)")
    parser.add_argument("--classes", type=int, default=1000, help="classes of the head")


def cmd_summary(args: argparse.Namespace) -> int:
    from keras_inception.analysis import model_stats, stats_table
    from keras_inception.models import get_builder

    size = args.image_size or 299
    model = get_builder(args.model)(weights=None, input_shape=(size, size, 3), classes=args.classes)
    if args.layers:
        model.summary(line_length=110)
    print(stats_table([model_stats(model)]))
    return 0


def load_classifier(model_arg: str, weights: str | None, image_size: int | None):
    """A Keras model from a model name (+ weights) or from a `.keras` file."""
    import keras

    import keras_inception  # noqa: F401  (registers custom layers for .keras files)
    from keras_inception.models import BUILDERS

    if model_arg in BUILDERS:
        size = image_size or 299
        include_top = True
        if weights in (None, "none"):
            raise ValueError(
                f"`--weights` is required to predict with {model_arg}: a preset such as "
                "'imagenet' or a weights file (random weights give meaningless classes)."
            )
        return BUILDERS[model_arg](
            include_top=include_top, weights=weights, input_shape=(size, size, 3)
        )
    if os.path.isfile(model_arg) and model_arg.endswith(".keras"):
        return keras.saving.load_model(model_arg)
    raise ValueError(
        f"MODEL must be one of {', '.join(MODEL_CHOICES)} or a .keras file; received {model_arg!r}."
    )


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from keras_inception.imagenet import decode_predictions, preprocess_input
    from keras_inception.images import load_image

    if args.tflite:
        from keras_inception.lite import Classifier

        # With --tflite there is no MODEL argument: every positional is an image.
        args.images = [args.model, *args.images]
        rows = Classifier(args.tflite).classify_files(args.images, args.top, args.crop_pct)
        decoded = [[("", label, score) for _, label, score in r] for r in rows]
        return _print_predictions(args.images, decoded)
    if not args.images:
        raise ValueError("at least one IMAGE is required after MODEL.")
    model = load_classifier(args.model, args.weights, args.image_size)
    size = int(model.input_shape[1])
    batch = np.stack([load_image(p, size, crop_pct=args.crop_pct) for p in args.images])
    preds = model.predict(preprocess_input(batch), verbose=0)
    if preds.shape[-1] == 1000:
        decoded = decode_predictions(preds, top=args.top)
    else:
        from keras_inception.training import read_class_names

        # A model trained by `keras-inception train` has its class names saved beside it.
        names = read_class_names(args.model) if args.model.endswith(".keras") else None
        if names is None or len(names) != preds.shape[-1]:
            names = [f"class_{i}" for i in range(preds.shape[-1])]
        decoded = [
            [("", names[i], float(row[i])) for i in np.argsort(row)[::-1][: args.top]]
            for row in preds
        ]
    return _print_predictions(args.images, decoded)


def _print_predictions(paths: list[str], decoded: list) -> int:
    for path, rows in zip(paths, decoded, strict=True):
        print(path)
        for rank, (_, label, score) in enumerate(rows, 1):
            print(f"  {rank}. {label:<30s} {score:.4f}")
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    from keras_inception.weights import list_weights

    list_weights()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from keras_inception.demo import run_demo

    return run_demo()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summary", help="parameters, GMACs and layers of a model")
    p.add_argument("model", choices=MODEL_CHOICES)
    _add_model_arguments(p)
    p.add_argument("--layers", action="store_true", help="also print the Keras layer summary")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser(
        "predict",
        help="top-k classes of images",
        description="Classify images with a model name + weights, or a saved .keras model.",
    )
    p.add_argument("model", help=f"one of {', '.join(MODEL_CHOICES)}, or a .keras file")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files (jpg, png, ...)")
    p.add_argument("--tflite", metavar="FILE", default=None,
                   help="classify with this exported .tflite file instead (then omit MODEL)")
    p.add_argument("--weights", default=None,
                   help="'imagenet' (or another preset) or a weights file, for a model name")
    p.add_argument("--image-size", type=int, default=None, help="input size (default 299)")
    p.add_argument("--crop-pct", type=float, default=0.875, help="center-crop fraction")
    p.add_argument("--top", type=int, default=5, help="how many classes to print")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("weights", help="list the pretrained weight presets")
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("demo", help="the main job of `make demo`")
    p.set_defaults(func=cmd_demo)
