"""`export` subcommand: SavedModel, TFLite (float32/float16/dynamic_int8/int8), ONNX and
OpenVINO (float32/int8)."""

from __future__ import annotations

import argparse
import os

from keras_inception.cli.arguments import (
    MODEL_CHOICES,
    add_image_size_option,
    add_model_option,
    check_model_file,
    check_output,
    check_weights_file,
    input_paths,
    positive_int,
)

FORMATS = ("saved_model", "tflite", "onnx", "openvino")
# A SavedModel is a folder of any name; an OpenVINO model is PATH.xml and PATH.bin.
SUFFIXES = {"tflite": ".tflite", "onnx": ".onnx", "openvino": ".xml"}
QUANTIZATIONS = ("float16", "dynamic_int8", "int8")


def _need_weights(model_arg: str) -> ValueError:
    return ValueError(
        f"`--weights` is required to export {model_arg}: a preset such as 'imagenet', a "
        "weights file, or 'none' to export random weights on purpose."
    )


def build_model(model_arg: str, weights: str | None, image_size: int | None, classes: int):
    """A model name (+ weights, size, classes) or a `.keras` file -> a Keras model (the
    options a `.keras` file does not take are refused by `check_export`)."""
    from keras_inception.cli.core import named_model_metadata, print_weights_origin
    from keras_inception.metadata import describe
    from keras_inception.registry import CLASSIFIER, get_spec, model_kind
    from keras_inception.train.evaluation import load_saved_model

    if model_arg not in MODEL_CHOICES:
        return load_saved_model(model_arg)[0]  # carrying its meaning
    if weights is None:
        raise _need_weights(model_arg)
    spec = get_spec(model_arg)
    size = image_size or spec.default_size
    weights = None if weights == "none" else weights
    if model_kind(model_arg) != CLASSIFIER:
        # An embedding network: raw 0-255 face crops in, standardised inside.
        model = spec.builder(weights=weights, input_shape=(size, size, 3),
                             include_preprocessing=True)
    else:
        model = spec.builder(weights=weights, input_shape=(size, size, 3), classes=classes)
        model = describe(model, named_model_metadata(model_arg, weights, size))
    print_weights_origin(model_arg, weights)
    return model


def check_export(args: argparse.Namespace) -> None:
    """Before TensorFlow is imported (nothing is built): the model file, the weights file
    and the calibration folder exist, the options agree, and `--out` can be written."""
    check_model_file(args)
    if args.model in MODEL_CHOICES and args.weights is None:
        raise _need_weights(args.model)
    check_weights_file(args.weights)
    if args.format not in ("tflite", "openvino") and (args.quantize or args.calibration_data):
        raise ValueError(
            f"`--quantize` and `--calibration-data` apply to --format tflite and openvino; "
            f"received --format {args.format}."
        )
    if args.calibration_data and args.quantize != "int8":
        raise ValueError(
            "`--calibration-data` is used by --quantize int8 only; "
            f"received --quantize {args.quantize}."
        )
    if args.quantize == "int8" and not args.calibration_data:
        raise ValueError("`--quantize int8` needs `--calibration-data DIR` (training images).")
    if args.calibration_data and not os.path.isdir(args.calibration_data):
        raise FileNotFoundError(f"--calibration-data {args.calibration_data!r} is not a folder; "
                                "expected a folder of images (at any depth).")
    if args.model == "facenet" and args.uint8_input and args.format == "saved_model":
        raise ValueError(
            "--uint8-input adds the classifiers' [-1, 1] scaling; a FaceNet export already takes "
            "raw 0-255 face crops (its standardisation is inside): leave --uint8-input out."
        )
    if args.uint8_input and args.format in ("onnx", "openvino"):
        raise ValueError("`--uint8-input` applies to saved_model and int8 tflite exports.")
    check_output(args.out, overwrite=args.overwrite, suffix=SUFFIXES.get(args.format),
                 command="export", kind="folder" if args.format == "saved_model" else "file",
                 inputs=input_paths(args))
    if args.format == "openvino":
        _check_openvino(args)


def _check_openvino(args: argparse.Namespace) -> None:
    """--format openvino: int8 is its one quantization, its packages are installed (the
    `openvino` extra), and the .xml / .bin pair at --out may be written."""
    from keras_inception.export.openvino import check_openvino_destination
    from keras_inception.export.openvino_runtime import require_packages

    if args.quantize not in (None, "int8"):
        raise ValueError(f"--format openvino takes `--quantize int8` (float32 without it); "
                         f"received --quantize {args.quantize}.")
    require_packages(args.quantize)
    check_openvino_destination(args.out, overwrite=args.overwrite, arg="--out")


def _drop_stale_class_names(exported: str) -> None:
    """Removes the class names an older version wrote beside an export at the same path
    (`FILE.class_names.json`): they describe the file just replaced, and the names now
    travel inside the file (its metadata)."""
    from keras_inception.saving import class_names_path

    stale = class_names_path(exported)
    if os.path.isfile(stale):
        os.remove(stale)


def _announce(model, args: argparse.Namespace) -> None:
    """What is about to happen, before the (long) conversion; for ONNX, the memory it takes."""
    from keras_inception.export.onnx import (
        ONNX_MEMORY_BASE,
        ONNX_MEMORY_PER_WEIGHT_BYTE,
        onnx_memory_estimate,
    )

    what = args.format + (f" ({args.quantize})" if args.quantize else "")
    print(f"Exporting {model.name} ({model.count_params():,} parameters, input "
          f"{tuple(model.input_shape[1:])}) to {what}: converting, then checking the result "
          "against the Keras model (a few minutes for large inputs on a CPU)...", flush=True)
    if args.format == "onnx":
        weights = 4 * model.count_params() / 2**30
        print(f"The ONNX conversion needs about {onnx_memory_estimate(model) / 2**30:.1f} GiB "
              f"of memory ({ONNX_MEMORY_BASE / 2**30:.1f} GiB + {ONNX_MEMORY_PER_WEIGHT_BYTE}x "
              f"the {weights:.2f} GiB of float32 weights).", flush=True)


def _calibration(model, args: argparse.Namespace):
    """The calibration images of --calibration-data, as the model's metadata says it takes
    them: its crop (whole face crops for FaceNet), then 0-255 pixels for a model that
    scales them itself, FaceNet's standardisation for one without that layer, else
    [-1, 1]."""
    from keras_inception import export
    from keras_inception.export.checks import PIXEL_RANGE, input_range
    from keras_inception.metadata import infer_metadata

    metadata, _ = infer_metadata(model)
    preprocess = True
    if input_range(model) == PIXEL_RANGE:
        preprocess = False
    elif metadata.input_scaling in ("prewhiten", "fixed"):
        preprocess = metadata.input_scaling
    return export.calibration_dataset(args.calibration_data, tuple(model.input_shape[1:3]),
                                      count=args.calibration_size, preprocess=preprocess,
                                      crop_pct=metadata.crop_pct)


def _export(model, args: argparse.Namespace) -> str:
    from keras_inception import export

    if args.format == "saved_model":
        return export.export_saved_model(
            model, args.out, include_preprocessing=args.uint8_input, overwrite=args.overwrite,
            create_parents=True,
        )
    if args.format == "onnx":
        return export.export_onnx(model, args.out, overwrite=args.overwrite, create_parents=True)
    if args.format == "openvino":
        return export.export_openvino(
            model, args.out, quantization=args.quantize, overwrite=args.overwrite,
            representative_data=_calibration(model, args) if args.calibration_data else None,
            create_parents=True)
    return export.export_tflite(
        model,
        args.out,
        quantization=args.quantize,
        representative_data=_calibration(model, args) if args.calibration_data else None,
        input_type="uint8" if args.uint8_input else "float32",
        overwrite=args.overwrite,
        create_parents=True,
    )


def _checked(args: argparse.Namespace, path: str) -> str:
    """What was checked, for the last line: int8 exports give their measured agreement."""
    agreement = getattr(path, "agreement", None)
    if agreement is not None:
        return str(agreement)
    if args.quantize == "dynamic_int8":
        return ("checked to run on probe images (int8 weights change the outputs: measure its "
                "accuracy on validation images)")
    rel_l2 = getattr(path, "rel_l2", None)  # OpenVINO: measured on probe images
    if rel_l2 is not None:
        return f"checked against the Keras model (relative L2 {rel_l2:.2g})"
    return "checked against the Keras model"


def cmd_export(args: argparse.Namespace) -> int:
    # The arguments were checked before TensorFlow was imported (check_export).
    model = build_model(args.model, args.weights, args.image_size, args.classes)
    _announce(model, args)
    try:
        path = _export(model, args)
    except (FileExistsError, ImportError) as e:
        raise ValueError(str(e)) from None
    _drop_stale_class_names(path)
    size = sum(
        os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files
    ) if os.path.isdir(path) else os.path.getsize(path)
    if args.format == "openvino":
        size += os.path.getsize(path.weights)  # the .bin beside the .xml
    print(f"Exported {model.name} ({args.format}"
          f"{', ' + args.quantize if args.quantize else ''}) to {path} ({size / 2**20:.1f} MiB), "
          f"{_checked(args, path)}.")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a model to SavedModel, TFLite, ONNX or OpenVINO",
        description=(
            "Export a model (a name + weights, or a .keras file) after checking that the "
            "exported artifact computes what the Keras model computes."
        ),
    )
    add_model_option(p, files=True, help_suffix=" (e.g. fine-tuned)")
    p.add_argument("--weights", default=None,
                   help="preset or weights file for a model name ('none': random weights)")
    add_image_size_option(p, help_text="input size (default 299)")
    p.add_argument("--classes", type=positive_int, default=1000, help="classes of the head")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--quantize", choices=QUANTIZATIONS, default=None,
                   help="TFLite quantization (default float32); OpenVINO: int8 (NNCF) only")
    p.add_argument("--calibration-data", metavar="DIR", default=None,
                   help="images (any depth under DIR) to calibrate --quantize int8")
    p.add_argument("--calibration-size", type=positive_int, default=100,
                   help="how many calibration images to use (default 100; fewer give a "
                        "QuantizationWarning); the int8 model's agreement with the Keras "
                        "model is measured on them")
    p.add_argument("--uint8-input", action="store_true",
                   help="take raw uint8 images: preprocessing inside the SavedModel, or "
                        "quantized uint8 input/output for --quantize int8")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--out", required=True, metavar="PATH",
                   help="destination (.tflite / .onnx file, OpenVINO .xml with its .bin "
                        "beside it, or SavedModel directory)")
    p.set_defaults(func=cmd_export, check=check_export)
