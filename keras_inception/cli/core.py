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
from keras_inception.metadata import DEFAULT_CROP_PCT


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


def load_classifier(model_arg: str, weights: str | None, image_size: int | None,
                    crop_pct: float | None = None):
    """(Keras model, its `ModelMetadata`) from a model name (+ weights) or a `.keras` file.

    A `.keras` file's meaning comes from the file (`keras_inception.metadata`); an older
    version's file falls back on its run folder (with a `SidecarWarning`), a file of
    another origin on the defaults (a `note:` line on stderr names them). An embedding
    model (FaceNet) is refused: its outputs are no classes. `crop_pct` (`--crop-pct`)
    overrides the model's crop.
    """
    from keras_inception.metadata import describe
    from keras_inception.train.evaluation import load_saved_model

    if model_arg in MODEL_CHOICES:
        model, metadata = _build_classifier(model_arg, weights, image_size)
    elif model_arg.endswith(".keras"):
        model, metadata = load_saved_model(model_arg)
    else:
        raise ValueError(
            f"`--model` must be one of {', '.join(MODEL_CHOICES)} or a .keras file; "
            f"received --model {model_arg!r}."
        )
    if not metadata.is_classifier:
        raise ValueError(_embedding_refusal(model_arg))
    if crop_pct is not None:
        metadata = metadata.replace(crop_pct=crop_pct)
    return describe(model, metadata), metadata


def _embedding_refusal(model_arg: str) -> str:
    name = model_arg if model_arg in MODEL_CHOICES else "facenet"
    return (f"--model {model_arg} computes face embeddings, not classes: use "
            f"`keras-inception embed --model {name} CROP...` for embeddings or "
            f"`keras-inception verify --model {name} CROP_A CROP_B` to compare two faces.")


def _build_classifier(model_arg: str, weights: str | None, image_size: int | None):
    """A model name with a preset or weights file, and what it means: the preset's crop,
    ImageNet's class names for an ImageNet classifier."""
    from keras_inception.models import get_builder
    from keras_inception.registry import CLASSIFIER, model_kind

    if model_kind(model_arg) != CLASSIFIER:
        raise ValueError(_embedding_refusal(model_arg))
    size = image_size or 299
    if weights in (None, "none"):
        raise ValueError(
            f"`--weights` is required to predict with {model_arg}: a preset such as "
            "'imagenet' or a weights file (random weights give meaningless classes)."
        )
    model = get_builder(model_arg)(include_top=True, weights=weights, input_shape=(size, size, 3))
    print_weights_origin(model_arg, weights)
    return model, named_model_metadata(model_arg, weights, size)


def named_model_metadata(model_arg: str, weights: str | None, size: int):
    """What a classifier built from a model name means: its size, and the crop of its
    preset (0.875 for random weights or a weights file)."""
    from keras_inception.metadata import ModelMetadata
    from keras_inception.registry import get_spec

    crop_pct = DEFAULT_CROP_PCT
    if weights in get_spec(model_arg).preset_names:  # unknown names: the builder says
        from keras_inception.train.config import evaluation_crop_pct

        crop_pct = evaluation_crop_pct(model_arg, weights, None)
    return ModelMetadata(image_size=(size, size), crop_pct=crop_pct, model=model_arg)


def output_names(metadata, outputs: int, class_names_file: str | None = None) -> list[str]:
    """The names of a classifier's `outputs`: `--class-names FILE`, else the model's own
    (its metadata), else ImageNet's for 1000 outputs, else `class_0`, `class_1`, ..."""
    names = read_names_file(class_names_file) if class_names_file else metadata.class_names
    if names is not None and len(names) != outputs:
        where = f"--class-names {class_names_file!r} holds" if class_names_file else "The model has"
        raise ValueError(f"{where} {len(names)} class names for a model with {outputs} outputs; "
                         "pass --class-names with one name per output.")
    if names is not None:
        return list(names)
    if outputs == 1000:
        from keras_inception.preprocessing import imagenet_classes

        return [imagenet_classes()[i][1] for i in range(1000)]
    return [f"class_{i}" for i in range(outputs)]


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
    if args.openvino is not None:
        _check_openvino_file(args)
    if args.model in MODEL_CHOICES:
        check_weights_file(args.weights)
    if args.class_names is not None:
        check_input_files([args.class_names], "--class-names",
                          "a file of class names (a JSON list, or one name a line)")
    check_input_files(args.images)


def _check_openvino_file(args: argparse.Namespace) -> None:
    """`--openvino FILE`: an OpenVINO IR's `.xml` with its `.bin` beside it, whose metadata
    (if any) can be read; `--weights` / `--image-size` refused as for `--tflite`."""
    from keras_inception.export.openvino_runtime import require_packages, weights_path
    from keras_inception.metadata import read_openvino_metadata

    path = args.openvino
    if not path.endswith(".xml"):
        raise ValueError(f"`--openvino` must be an OpenVINO IR's .xml file (its weights in the "
                         f".bin beside it); received --openvino {path!r}.")
    check_input_files([path], "--openvino", "an OpenVINO IR's .xml file")
    check_model_file(args, "--openvino")
    read_openvino_metadata(path)  # a file that is not an IR: one line, now
    check_input_files([weights_path(path)], f"The weights of --openvino {path!r}",
                      "the .bin that export wrote beside the .xml")
    require_packages()


def cmd_predict(args: argparse.Namespace) -> int:
    """Classifies every readable image; unreadable ones are reported on stderr and make
    the exit code 1 (the others are still classified)."""
    if args.tflite or args.openvino:
        loaded, errors, decoded = _predict_tflite(args)
    else:
        loaded, errors, decoded = _predict_keras(args)
    _print_predictions([path for _, path, _ in loaded], decoded)
    for message in errors:
        print(f"keras-inception predict: error: {message}", file=sys.stderr)
    if errors and not loaded:
        return 2
    return 1 if errors else 0


def _predict_keras(args: argparse.Namespace) -> tuple[list, list, list]:
    import numpy as np

    from keras_inception.cli.images import load_input_images
    from keras_inception.export.checks import keras_outputs
    from keras_inception.export.runtime import scaled_input

    model, metadata = load_classifier(args.model, args.weights, args.image_size, args.crop_pct)
    loaded, errors = load_input_images(args.images, metadata.image_size[0], metadata.crop_pct,
                                       "predict")
    if not loaded:
        return loaded, errors, []
    x = scaled_input(np.stack([im for _, _, im in loaded]), metadata.input_scaling)
    preds = keras_outputs(model, x)  # eager: a one-off `predict` would trace a graph first
    if preds.shape[-1] == 1000 and metadata.class_names is None and args.class_names is None:
        from keras_inception.preprocessing import decode_predictions

        return loaded, errors, decode_predictions(preds, top=args.top)
    names = output_names(metadata, int(preds.shape[-1]), args.class_names)
    top = min(args.top, preds.shape[-1])
    return loaded, errors, [[("", names[i], float(row[i])) for i in np.argsort(row)[::-1][:top]]
                            for row in preds]


def _predict_tflite(args: argparse.Namespace) -> tuple[list, list, list]:
    """A `.tflite` (or OpenVINO `.xml`) classifier, cropped and named as its own metadata
    says (`--crop-pct` and `--class-names` override it; a file without metadata: the
    defaults, said once)."""
    from keras_inception.cli.images import load_input_images
    from keras_inception.export.runtime import Classifier
    from keras_inception.metadata import DEFAULT_CROP_PCT, assumed_line

    names = read_names_file(args.class_names) if args.class_names is not None else None
    path = args.tflite or args.openvino
    classifier = Classifier(path, class_names=names)
    metadata = getattr(classifier, "metadata", None)
    crop_pct = args.crop_pct
    if crop_pct is None:
        crop_pct = DEFAULT_CROP_PCT if metadata is None else metadata.crop_pct
    if metadata is None and args.crop_pct is None:
        from keras_inception.metadata import ModelMetadata

        print(assumed_line(["crop_pct"], ModelMetadata(), repr(path)), file=sys.stderr)
    loaded, errors = load_input_images(args.images, classifier.input_size[0], crop_pct, "predict")
    top = min(args.top, classifier.num_classes)
    decoded = [[("", label, score) for _, label, score in classifier.top_k(image, top)[0]]
               for _, _, image in loaded]
    return loaded, errors, decoded


def read_names_file(path: str) -> list[str]:
    """`--class-names FILE`: a JSON list, or one name a line."""
    import json

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise OSError(f"Cannot read --class-names {path!r}: {e.strerror}.") from None
    try:
        names = json.loads(text)
    except ValueError:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not isinstance(names, list) or not names:
        raise ValueError(f"--class-names {path!r} holds no list of names.")
    return [str(name) for name in names]


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
                    "exported .tflite file or OpenVINO .xml.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="MODEL",
                        help=f"one of {', '.join(MODEL_CHOICES)}, or a .keras file")
    source.add_argument("--tflite", metavar="FILE", help="an exported .tflite classifier")
    source.add_argument("--openvino", metavar="FILE",
                        help="an exported OpenVINO classifier's .xml (its .bin beside it)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (jpg, png, ...)")
    add_classifier_input_options(p)
    p.add_argument("--top", type=positive_int, default=5, help="how many classes to print")
    p.add_argument("--class-names", metavar="FILE", default=None,
                   help="names of the outputs (JSON list or one a line); default: the "
                        "names the model file carries (an older version's class_names.json "
                        "beside it, with a warning), else ImageNet's or class_<i>")
    p.set_defaults(func=cmd_predict, check=check_predict)

    p = sub.add_parser("weights", help="list the pretrained weight presets")
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("demo", help="the main job of `make demo`")
    p.set_defaults(func=cmd_demo)



