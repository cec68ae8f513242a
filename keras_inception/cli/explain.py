"""`explain` subcommand: where a classifier looks, as heatmaps over the images it saw.

For each image, the map of `keras_inception.explain` (Grad-CAM, Grad-CAM++ or
integrated gradients) is drawn over the model's input crop (0-255 pixels) as a PNG,
and `explanations.json` records what was explained: the predicted class and its
probability, the explained class, the method, the layer and where the map peaks.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

from keras_inception.cli.arguments import (
    MODEL_CHOICES,
    add_classifier_input_options,
    add_model_option,
    check_input_files,
    check_model_file,
    check_output,
    check_weights_file,
    input_paths,
    positive_int,
)
from keras_inception.cli.embeddings import MODEL as EMBEDDING_MODEL

# keras_inception.explain.METHODS plus integrated gradients (not imported: `--help` must
# not import Keras).
METHODS = ("gradcam", "gradcam++", "integrated_gradients")
INTEGRATED_GRADIENTS = "integrated_gradients"
EXPLANATIONS_FILE = "explanations.json"
_LISTED_NAMES = 10  # class names an error lists before "..."


def _embedding_refusal(model_arg: str) -> ValueError:
    return ValueError(
        f"--model {model_arg} computes embeddings, not classes: `explain` explains a class. "
        "Explain a face with the Python API, keras_inception.explain.grad_cam(model, crops, "
        "target=reference_embeddings) (the score is then the cosine similarity to them).")


def check_explain(args: argparse.Namespace) -> None:
    """Before TensorFlow is imported (nothing is loaded): the model (not a .tflite, which
    has no gradients), the weights file, every image, the options that apply, and an
    `--out` that can be written."""
    if args.model.endswith(".tflite"):
        raise ValueError(
            f"--model {args.model!r} is a TFLite file: explanations need gradients, which a "
            ".tflite does not give; pass the .keras file the .tflite was exported from.")
    if args.model == EMBEDDING_MODEL:
        raise _embedding_refusal(args.model)
    check_model_file(args, "--model")
    if args.model in MODEL_CHOICES:
        if args.weights in (None, "none"):
            raise ValueError(
                f"`--weights` is required to explain {args.model}: a preset such as 'imagenet' "
                "or a weights file (random weights give meaningless explanations).")
        check_weights_file(args.weights)
    if args.method == INTEGRATED_GRADIENTS and args.layer is not None:
        raise ValueError(
            f"`--layer` applies to gradcam and gradcam++; integrated_gradients attributes the "
            f"model's input; received --method {args.method} --layer {args.layer}.")
    check_input_files(args.images)
    check_output(args.out, overwrite=args.overwrite, command="explain", kind="folder",
                 inputs=input_paths(args))


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_LISTED_NAMES])
    return shown if len(names) <= _LISTED_NAMES else f"{shown}, ... ({len(names)} names)"


def target_index(target: str, names: list[str]) -> int:
    """`--target`: a class name of the model, or an index into its outputs."""
    matches = [i for i, name in enumerate(names) if name == target]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ValueError(f"--target {target!r} names {len(matches)} classes (indices "
                         f"{', '.join(map(str, matches))}): pass one of these indices.")
    accepted = f"a class name of the model ({_listed(names)}) or an index in 0..{len(names) - 1}"
    try:
        index = int(target)
    except ValueError:
        raise ValueError(f"Unknown --target {target!r}: expected {accepted}.") from None
    if not 0 <= index < len(names):
        raise ValueError(f"--target {target!r} is out of range: the model has {len(names)} "
                         f"classes; expected {accepted}.")
    return index


def _input_name(model) -> str:
    import keras

    return next((layer.name for layer in model.layers
                 if isinstance(layer, keras.layers.InputLayer)), "input")


def _progress(paths: list[str]) -> Callable[[int, int], None]:
    """A line on stderr as integrated gradients finish each image, with the seconds since
    the start: an image's path is 33 points through the network, a minute or more on a
    CPU for a large network at 299 px."""
    start = time.monotonic()

    def report(done: int, total: int) -> None:
        print(f"keras-inception explain: integrated gradients {done}/{total} done "
              f"({paths[done - 1]}), {time.monotonic() - start:.1f} s", file=sys.stderr,
              flush=True)

    return report


def _maps(model, x, target, args: argparse.Namespace, layer: str | None, paths: list[str]):
    """(N, H, W) maps in [0, 1]: Grad-CAM's, or |integrated gradients| summed over the
    channels and divided by each image's maximum."""
    import numpy as np

    from keras_inception import explain

    if args.method != INTEGRATED_GRADIENTS:
        return explain.grad_cam(model, x, target=target, layer=layer, method=args.method,
                                batch_size=args.batch_size)
    print(f"keras-inception explain: integrated gradients of {len(x)} image(s), a line as "
          "each is done", file=sys.stderr, flush=True)
    total = np.abs(explain.integrated_gradients(
        model, x, target=target, batch_size=args.batch_size, progress=_progress(paths),
    )).sum(axis=-1)
    peak = total.max(axis=(1, 2), keepdims=True)
    return np.where(peak > 0, total / np.where(peak > 0, peak, 1), 0).astype("float32")


def peak_of(heatmap) -> dict | None:
    """Where `heatmap` is highest (`explain.peak`): row and column in the model's input,
    and the centre of that pixel as a fraction of the height and width; None for an
    all-zero map."""
    from keras_inception import explain

    location = explain.peak(heatmap)
    if location is None:
        return None
    (row, col), (height, width) = location, heatmap.shape
    return {"row": row, "col": col, "relative_row": round((row + 0.5) / height, 4),
            "relative_col": round((col + 0.5) / width, 4)}


def png_name(position: int, path: str, count: int) -> str:
    """`3_daisy.png`: the image's position among IMAGE (unique), then its name."""
    stem = os.path.splitext(os.path.basename(path))[0] or "image"
    return f"{position:0{len(str(count - 1))}d}_{stem}.png"


def _record(args: argparse.Namespace, layer: str, names: list[str], path: str, png: str,
            probabilities, target: int, heatmap) -> dict:
    """What explanations.json says of one image."""
    predicted = int(probabilities.argmax())
    return {
        "image": path,
        "png": png,
        "predicted": {"index": predicted, "name": names[predicted],
                      "score": float(probabilities[predicted])},
        "target": {"index": target, "name": names[target], "score": float(probabilities[target])},
        "method": args.method,
        "layer": layer,
        "peak": peak_of(heatmap),
    }


def _print_records(records: list[dict]) -> None:
    for record in records:
        peak = record["peak"]
        where = "an all-zero map" if peak is None else (
            f"peak at row {peak['row']}, col {peak['col']}")
        print(f"{record['image']} -> {record['png']}: predicted {record['predicted']['name']} "
              f"({record['predicted']['score']:.4f}), explained {record['target']['name']}, "
              f"{where}")


def cmd_explain(args: argparse.Namespace) -> int:
    """Explains every readable image; unreadable ones are reported on stderr (one line
    each) and make the exit code 2, the others are still explained and written."""
    import numpy as np
    from PIL import Image

    from keras_inception.cli.core import load_classifier, output_names
    from keras_inception.cli.images import load_input_images
    from keras_inception.explain import overlay, resolve_layer
    from keras_inception.export.checks import keras_outputs
    from keras_inception.export.runtime import scaled_input
    from keras_inception.files import staged_path, write_json_atomic

    # The arguments were checked before TensorFlow was imported (check_explain); an
    # embedding model is refused by its metadata (load_classifier).
    model, metadata = load_classifier(args.model, args.weights, args.image_size, args.crop_pct)
    crop_pct = metadata.crop_pct
    names = output_names(metadata, int(model.output_shape[-1]))
    chosen = None if args.target is None else target_index(args.target, names)
    if args.method == INTEGRATED_GRADIENTS:
        layer = _input_name(model)
    else:
        layer = "/".join(resolve_layer(model, args.layer)[0])  # at the model's input size
    loaded, errors = load_input_images(args.images, metadata.image_size[0], crop_pct, "explain")
    if loaded:
        crops = np.stack([crop for _, _, crop in loaded])
        x = scaled_input(crops, metadata.input_scaling)
        probabilities = keras_outputs(model, x).astype("float64")  # eager, as the maps run
        predicted = probabilities.argmax(axis=-1)
        targets = predicted if chosen is None else np.full(len(loaded), chosen)
        maps = _maps(model, x, targets, args,
                     None if args.method == INTEGRATED_GRADIENTS else layer,
                     [path for _, path, _ in loaded])
        records = [_record(args, layer, names, path, png_name(position, path, len(args.images)),
                           probabilities[row], int(targets[row]), maps[row])
                   for row, (position, path, _) in enumerate(loaded)]
        out = os.path.abspath(args.out)
        with staged_path(out, overwrite=args.overwrite, create_parents=True, arg="--out",
                         command="explain", kind="folder", inputs=input_paths(args)) as staged:
            os.mkdir(staged)
            for record, (_, _, crop), heatmap in zip(records, loaded, maps, strict=True):
                Image.fromarray(overlay(crop, heatmap)).save(os.path.join(staged, record["png"]))
            write_json_atomic(os.path.join(staged, EXPLANATIONS_FILE),
                              {"model": args.model, "crop_pct": crop_pct, "images": records})
        _print_records(records)
        print(f"{len(records)} explanations ({args.method}, layer {layer}) -> {out}")
    for message in errors:
        print(f"keras-inception explain: error: {message}", file=sys.stderr)
    return 2 if errors else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="heatmaps of where a classifier looks (Grad-CAM, Grad-CAM++, integrated "
             "gradients)",
        description=(
            "Explain a classifier's answer for each image: the heatmap of --method over the "
            "model's input crop, one PNG per image in --out, and explanations.json with the "
            "predicted class and its probability, the explained class, the layer and the "
            "map's peak (row and column in the model's input)."
        ),
    )
    add_model_option(p, files=True, help_suffix=" (e.g. train's best.keras, whose class "
                                                "names and crop are read from its run)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (jpg, png, ...)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder to write (one PNG per image and explanations.json)")
    p.add_argument("--target", metavar="CLASS", default=None,
                   help="the class to explain, a class name of the model or an index "
                        "(default: each image's predicted class)")
    p.add_argument("--method", choices=METHODS, default="gradcam",
                   help="gradcam (default), gradcam++ or integrated_gradients")
    p.add_argument("--layer", metavar="NAME", default=None,
                   help="the layer Grad-CAM reads: a layer name or path, e.g. block17_10_ac "
                        "(default: the network's last feature map, or the deepest one larger "
                        "than 1x1 where the last is 1x1 at a small input size)")
    p.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                   help="images (gradcam, gradcam++), or points of the paths of "
                        "integrated_gradients (33 per image), per forward and backward pass: "
                        "bounds the memory (default: as many as make 4 images of 299x299 px, "
                        "about 3 GB for Inception-ResNet-v2 on a CPU; 63 at 75 px)")
    add_classifier_input_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=cmd_explain, check=check_explain)
