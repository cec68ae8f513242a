"""`summary`, `predict`, `weights` and `demo` subcommands."""

from __future__ import annotations

import argparse
import inspect
import sys

from keras_inception.cli.arguments import (
    MODEL_CHOICES,
    add_classifier_input_options,
    add_image_size_option,
    add_model_option,
    check_input_files,
    check_model_file,
    check_weights_file,
    positive_int,
)


def cmd_summary(args: argparse.Namespace) -> int:
    from keras_inception.analysis import model_stats, stats_table
    from keras_inception.models import get_builder

    builder = get_builder(args.model)
    size = args.image_size or _default_size(builder)
    kwargs = {"classes": args.classes} if "classes" in inspect.signature(builder).parameters else {}
    model = builder(weights=None, input_shape=(size, size, 3), **kwargs)
    if args.layers:
        model.summary(line_length=110)
    print(stats_table([model_stats(model)]))
    return 0


def _default_size(builder) -> int:
    """The builder's default input size (299; FaceNet's 160)."""
    default = inspect.signature(builder).parameters["input_shape"].default
    return int(default[0]) if default else 299


def load_classifier(model_arg: str, weights: str | None, image_size: int | None):
    """A Keras model from a model name (+ weights) or from a `.keras` file."""
    from keras_inception.models import get_builder
    from keras_inception.saving import load_model

    if model_arg in MODEL_CHOICES:
        from keras_inception.registry import get_spec

        if not get_spec(model_arg).classifier:
            raise ValueError(
                f"--model {model_arg} computes face embeddings, not classes: use "
                f"`keras-inception embed --model {model_arg} CROP...` for embeddings or "
                f"`keras-inception verify --model {model_arg} CROP_A CROP_B` to compare two faces."
            )
        size = image_size or 299
        if weights in (None, "none"):
            raise ValueError(
                f"`--weights` is required to predict with {model_arg}: a preset such as "
                "'imagenet' or a weights file (random weights give meaningless classes)."
            )
        model = get_builder(model_arg)(include_top=True, weights=weights,
                                       input_shape=(size, size, 3))
        print_weights_origin(model_arg, weights)
        return model
    if model_arg.endswith(".keras"):
        return load_model(model_arg)
    raise ValueError(
        f"`--model` must be one of {', '.join(MODEL_CHOICES)} or a .keras file; "
        f"received --model {model_arg!r}."
    )


def print_weights_origin(model_name: str, weights: str | None) -> None:
    """One `weights:` line on stderr saying where a preset's weights came from (the local
    cache, a download, the package index); nothing for a weights file or no weights."""
    from keras_inception.presets.loader import preset_origin

    origin = preset_origin(model_name, weights) if weights else None
    if origin is not None:
        print(f"weights: {model_name} {weights}, {origin}", file=sys.stderr)


def check_predict(args: argparse.Namespace) -> None:
    """Before TensorFlow is imported: the model file or weights file, the class names and
    every image exist; `--weights` / `--image-size` are refused with a saved model."""
    check_model_file(args, "--model")
    check_model_file(args, "--tflite")
    if args.model in MODEL_CHOICES:
        check_weights_file(args.weights)
    if args.class_names is not None:
        check_input_files([args.class_names], "--class-names",
                          "a file of class names (a JSON list, or one name a line)")
    check_input_files(args.images)


def predict_crop_pct(args: argparse.Namespace) -> float:
    """`--crop-pct`, else the one the training run of a `.keras` recorded, else the preset's
    (a model name with a preset), else 0.875."""
    from keras_inception.preprocessing import DEFAULT_CROP_PCT

    if args.crop_pct is not None:
        return args.crop_pct
    if args.model is not None and args.model.endswith(".keras"):
        from keras_inception.train.run_folder import recorded_crop_pct

        recorded = recorded_crop_pct(args.model)
        return DEFAULT_CROP_PCT if recorded is None else recorded
    if args.model in MODEL_CHOICES:
        from keras_inception.registry import get_spec
        from keras_inception.train.config import evaluation_crop_pct

        if args.weights in get_spec(args.model).preset_names:  # unknown names: the builder says
            return evaluation_crop_pct(args.model, args.weights, None)
    return DEFAULT_CROP_PCT


def cmd_predict(args: argparse.Namespace) -> int:
    """Classifies every readable image; unreadable ones are reported on stderr and make
    the exit code 1 (the others are still classified)."""
    import numpy as np

    from keras_inception.cli.images import load_input_images
    from keras_inception.preprocessing import preprocess_input

    crop_pct = predict_crop_pct(args)
    if args.tflite:
        from keras_inception.export.runtime import Classifier

        # Without --class-names the Classifier reads the file's own names (see there).
        names = _class_names(args) if args.class_names is not None else None
        classifier = Classifier(args.tflite, class_names=names)
        loaded, errors = load_input_images(args.images, classifier.input_size[0], crop_pct,
                                           "predict")
        top = min(args.top, classifier.num_classes)
        decoded = [[("", label, score) for _, label, score in classifier.top_k(image, top)[0]]
                   for _, _, image in loaded]
    else:
        model = load_classifier(args.model, args.weights, args.image_size)
        loaded, errors = load_input_images(args.images, int(model.input_shape[1]), crop_pct,
                                           "predict")
        decoded = []
        if loaded:
            preds = model.predict(preprocess_input(np.stack([im for _, _, im in loaded])), verbose=0)
            decoded = _decode(preds, args)
    _print_predictions([path for _, path, _ in loaded], decoded)
    for message in errors:
        print(f"keras-inception predict: error: {message}", file=sys.stderr)
    if errors and not loaded:
        return 2
    return 1 if errors else 0


def _class_names(args: argparse.Namespace) -> list[str] | None:
    """--class-names FILE (a JSON list, or one name a line), else the names saved beside
    the model (`FILE.class_names.json` written by `export`, or the `class_names.json`
    that `train` writes beside `best.keras`), else None."""
    import json

    from keras_inception.saving import read_class_names

    if args.class_names is None:
        return read_class_names(args.tflite or args.model)
    try:
        with open(args.class_names, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise OSError(f"Cannot read --class-names {args.class_names!r}: {e.strerror}.") from None
    try:
        names = json.loads(text)
    except ValueError:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not isinstance(names, list) or not names:
        raise ValueError(f"--class-names {args.class_names!r} holds no list of names.")
    return [str(name) for name in names]


def _decode(preds, args: argparse.Namespace) -> list:
    import numpy as np

    from keras_inception.preprocessing import decode_predictions

    if preds.shape[-1] == 1000:
        return decode_predictions(preds, top=args.top)
    # A model trained by `keras-inception train` has its class names saved beside it.
    names = _class_names(args) if (args.model.endswith(".keras") or args.class_names) else None
    if names is not None and len(names) != preds.shape[-1]:
        raise ValueError(
            f"{len(names)} class names for a model with {preds.shape[-1]} outputs; pass "
            "--class-names with one name per output."
        )
    if names is None:
        names = [f"class_{i}" for i in range(preds.shape[-1])]
    top = min(args.top, preds.shape[-1])
    return [[("", names[i], float(row[i])) for i in np.argsort(row)[::-1][:top]] for row in preds]


def _print_predictions(paths: list[str], decoded: list) -> int:
    for path, rows in zip(paths, decoded, strict=True):
        print(path)
        for rank, (_, label, score) in enumerate(rows, 1):
            print(f"  {rank}. {label:<30s} {score:.4f}")
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    from keras_inception.presets import list_weights

    list_weights()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from keras_inception.apps.demo import run_demo

    return run_demo()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summary", help="parameters, GMACs and layers of a model")
    add_model_option(p, files=False)
    add_image_size_option(p, help_text="input height and width (default: the network's, 299 or 160)")
    p.add_argument("--classes", type=positive_int, default=1000, help="classes of the head")
    p.add_argument("--layers", action="store_true", help="also print the Keras layer summary")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser(
        "predict",
        help="top-k classes of images",
        description="Classify images with a model name + weights, a saved .keras model, or an "
                    "exported .tflite file.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="MODEL",
                        help=f"one of {', '.join(MODEL_CHOICES)}, or a .keras file")
    source.add_argument("--tflite", metavar="FILE", help="an exported .tflite classifier")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (jpg, png, ...)")
    add_classifier_input_options(p)
    p.add_argument("--top", type=positive_int, default=5, help="how many classes to print")
    p.add_argument("--class-names", metavar="FILE", default=None,
                   help="names of the outputs (JSON list or one a line); default: the "
                        "model's own FILE.class_names.json (written by export), else a "
                        "class_names.json beside it with one name per output, if any")
    p.set_defaults(func=cmd_predict, check=check_predict)

    p = sub.add_parser("weights", help="list the pretrained weight presets")
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("demo", help="the main job of `make demo`")
    p.set_defaults(func=cmd_demo)



