"""`embed` and `verify` subcommands: FaceNet embeddings of face crops, and face verification.

Inputs are face crops (image files of one face each, e.g. from an MTCNN detector);
each is resized whole to the model's 160x160 input (`load_image(..., crop_pct=1.0)`)
and standardised inside the model (`include_preprocessing=True`) as its weights
expect: "prewhiten" for ms_celeb_1m / facenet_keras.h5, "fixed" for the
facenet-pytorch weights (vggface2, casia_webface, .pt files).
"""

from __future__ import annotations

import argparse
import os

from keras_inception.cli.arguments import (
    add_model_option,
    check_input_files,
    check_output,
    check_weights_file,
    input_paths,
    positive_int,
)

MODEL = "facenet"
DEFAULT_WEIGHTS = "ms_celeb_1m"
# keras_inception.layers.STANDARDIZATIONS (not imported: `--help` must not import Keras).
STANDARDIZATIONS = ("prewhiten", "fixed")


def distance_threshold(text: str) -> float:
    """argparse type: a distance threshold in (0, 2] (unit embeddings are at most 2 apart)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 2:  # NaN fails too
        raise argparse.ArgumentTypeError(f"expected a number in (0, 2]; received {text!r}")
    return value


def _check_model(model: str) -> None:
    if model != MODEL:
        raise ValueError(
            f"Face embeddings need --model {MODEL} (Inception-ResNet-v1 trained on faces); "
            f"received --model {model!r}."
        )


def embedding_dim_of_file(path: str) -> int | None:
    """The embedding size stored in a FaceNet `.weights.h5`: the output size of its only
    2-D tensor, the bottleneck kernel (None if the file holds no single one)."""
    import h5py

    found: list[int] = []

    def visit(name: str, obj) -> None:
        if isinstance(obj, h5py.Dataset) and len(obj.shape) == 2:
            found.append(int(obj.shape[1]))

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except OSError:
        return None  # the loader reports what is wrong with the file
    return found[0] if len(found) == 1 else None


def resolve_weights(weights: str, embedding_dim: int | None,
                    standardization: str | None) -> tuple[int, str, bool]:
    """(embedding size, standardisation, whether the model's own layer applies it) for
    `--weights`, from the preset or the kind of file unless given."""
    from keras_inception.models import facenet as facenet_model
    from keras_inception.registry import get_spec

    spec = get_spec(MODEL)
    if weights not in spec.preset_names and not os.path.isfile(weights):
        raise FileNotFoundError(
            f"--weights {weights!r} is neither a FaceNet preset ({', '.join(spec.preset_names)}) "
            "nor an existing file (facenet_keras.h5, a facenet-pytorch .pt, or a .weights.h5)."
        )
    kind = facenet_model._weights_kind(weights)
    saved = _saved_metadata(weights)
    if embedding_dim is None and saved is not None:
        embedding_dim = saved.embedding_dim
    if standardization is None and saved is not None and saved.input_scaling in STANDARDIZATIONS:
        standardization = saved.input_scaling  # what the saved model was built to take
    if embedding_dim is None:
        if kind == "preset":
            embedding_dim = spec.preset(weights).embedding_dim
        elif kind == "facenet-pytorch":
            embedding_dim = 512
        elif kind == "keras" and weights.endswith(".h5"):
            embedding_dim = embedding_dim_of_file(weights) or 128
        else:
            embedding_dim = 128
    inside = facenet_model._standardization(weights, kind)
    chosen = standardization or inside
    return int(embedding_dim), chosen, chosen == inside


def _saved_metadata(weights: str):
    """The metadata of a FaceNet saved as `.keras` by this package (its embedding size,
    standardisation and threshold), else None. A classifier's file is refused."""
    from keras_inception.metadata import read_keras_metadata

    metadata = read_keras_metadata(weights) if weights.endswith(".keras") else None
    if metadata is not None and not metadata.kind == "embedding":
        raise ValueError(f"--weights {weights!r} is a classifier ({len(metadata.class_names or ())}"
                         " classes), not a FaceNet: use `keras-inception predict --model` for it.")
    return metadata


class FaceEmbedder:
    """The Keras FaceNet of `--weights`, taking raw 0-255 face crops."""

    def __init__(self, weights: str, embedding_dim: int | None, standardization: str | None):
        from keras_inception.cli.core import print_weights_origin
        from keras_inception.models.facenet import DEFAULT_SIZE, FaceNet

        self.embedding_dim, self.standardization, inside = resolve_weights(
            weights, embedding_dim, standardization)
        self.size = DEFAULT_SIZE
        # Standardisation inside the model (include_preprocessing=True) whenever it is
        # the one the builder picks for these weights; an explicit other choice is
        # applied to the crops before the model (the same computation).
        self.outside = None if inside else self.standardization
        self.model = FaceNet(weights=weights, embedding_dim=self.embedding_dim,
                             include_preprocessing=inside)
        print_weights_origin(MODEL, weights)

    def embed(self, crops):
        import numpy as np

        from keras_inception.export.checks import keras_outputs

        x = np.stack(crops).astype(np.float32)
        if self.outside is not None:
            from keras_inception.embeddings import preprocess_input

            x = preprocess_input(x, self.outside)
        return keras_outputs(self.model, x, batch_size=16)  # eager: no graph traced per run


def load_crops(paths: list[str], size: int, command: str = "embed") -> list:
    """Every face crop resized to `size`; the first unreadable file is an error naming it,
    a crop far smaller than `size` gets a warning line."""
    from keras_inception.cli.images import load_input_image

    return [load_input_image(path, size, 1.0, command) for path in paths]


def check_embed(args: argparse.Namespace) -> None:
    """Before TensorFlow is imported (nothing is computed): the model, the weights file,
    the crops, and an `--out` that can be written."""
    _check_model(args.model)
    check_weights_file(args.weights)
    check_input_files(args.images, "CROP", "a face crop image file")
    check_output(args.out, overwrite=args.overwrite, suffix=".npy", command="embed",
                 kind="file", inputs=input_paths(args))


def check_verify(args: argparse.Namespace) -> None:
    """Before TensorFlow is imported: the model, the weights file and the two crops."""
    _check_model(args.model)
    check_weights_file(args.weights)
    check_input_files(args.images, "CROP", "a face crop image file")


# What a FaceNet distance means: faces, aligned (one face filling each crop).
VERIFY_SCOPE = ("(the answer holds for aligned face crops only, one face filling each image as "
                "a face detector crops it; for other images the distance means nothing)")


def cmd_embed(args: argparse.Namespace) -> int:
    import numpy as np

    from keras_inception.files import write_atomic
    from keras_inception.models.facenet import DEFAULT_SIZE

    # The arguments were checked before TensorFlow was imported (check_embed).
    out = os.path.abspath(args.out)
    crops = load_crops(args.images, DEFAULT_SIZE)
    embedder = FaceEmbedder(args.weights, args.embedding_dim, args.standardization)
    embeddings = embedder.embed(crops)

    def write(staged: str) -> None:
        with open(staged, "wb") as f:
            np.save(f, embeddings)

    write_atomic(out, write, overwrite=args.overwrite, suffix=".npy", create_parents=True,
                 arg="--out", command="embed", kind="file", inputs=input_paths(args))
    for row, path in enumerate(args.images):
        print(f"{row:4d}  {path}")
    print(f"{len(crops)} x {embedder.embedding_dim} float32 L2-normalised embeddings "
          f"(weights {args.weights}, {embedder.standardization} standardisation) -> {out}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from keras_inception import embeddings
    from keras_inception.models.facenet import DEFAULT_SIZE
    from keras_inception.registry import get_spec

    crops = load_crops(args.images, DEFAULT_SIZE, "verify")
    saved = _saved_metadata(args.weights)
    if args.threshold is not None:
        threshold, source = args.threshold, "--threshold"
    elif saved is not None and saved.threshold is not None:
        threshold, source = saved.threshold, f"saved in {args.weights}"
    else:
        preset = (args.weights if args.weights in get_spec(MODEL).preset_names
                  else embeddings.DEFAULT_PRESET)
        threshold, source = embeddings.default_threshold(preset), f"default of {preset}"
    embedder = FaceEmbedder(args.weights, args.embedding_dim, args.standardization)
    a, b = embedder.embed(crops)
    d = embeddings.distance(a, b)
    verdict = "same person" if d < threshold else "different people"
    print(f"{args.images[0]}")
    print(f"{args.images[1]}")
    print(f"distance {d:.6f}, threshold {threshold:g} ({source}): {verdict}")
    print(VERIFY_SCOPE)
    return 0


def _add_weights_options(p: argparse.ArgumentParser) -> None:
    add_model_option(p, files=False, required=False, default=MODEL,
                     help_suffix=f"; only {MODEL} computes face embeddings (default)")
    p.add_argument(
        "--weights", default=DEFAULT_WEIGHTS, metavar="W",
        help=f"a FaceNet preset (default {DEFAULT_WEIGHTS}; vggface2, casia_webface), "
             "keras-facenet's facenet_keras.h5, a facenet-pytorch .pt, or a .weights.h5",
    )
    p.add_argument(
        "--embedding-dim", type=positive_int, default=None, metavar="D",
        help="embedding size (default: the weights': 128 for ms_celeb_1m and "
             "facenet_keras.h5, 512 for the facenet-pytorch weights, read from a .weights.h5)",
    )
    p.add_argument(
        "--standardization", choices=STANDARDIZATIONS, default=None,
        help="input standardisation (default: the weights': prewhiten for ms_celeb_1m, "
             "facenet_keras.h5 and .weights.h5 files, fixed for the facenet-pytorch weights)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed",
        help="FaceNet embeddings of face crops, saved as an (N, D) .npy",
        description=(
            "Compute L2-normalised FaceNet embeddings of face crops (one face per image, e.g. "
            "from a face detector; each is resized whole to 160x160) and save them as an "
            "(N, D) float32 .npy, one row per image in the order given."
        ),
    )
    _add_weights_options(p)
    p.add_argument("images", nargs="+", metavar="CROP", help="face crop image files")
    p.add_argument("--out", required=True, metavar="EMB.npy", help="output .npy file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=cmd_embed, check=check_embed)

    p = sub.add_parser(
        "verify",
        help="whether two face crops show the same person (FaceNet distance)",
        description=(
            "Embed two face crops with FaceNet and compare the Euclidean distance of their "
            "unit embeddings (0 = identical, 2 = opposite) with a threshold: below it, the "
            "same person."
        ),
    )
    _add_weights_options(p)
    p.add_argument("images", nargs=2, metavar="CROP", help="two face crop image files")
    p.add_argument(
        "--threshold", type=distance_threshold, default=None, metavar="T",
        help="distance below which the faces are the same person, in (0, 2] (default: the "
             "preset's recommended threshold, 1.1 for the FaceNet presets)",
    )
    p.set_defaults(func=cmd_verify, check=check_verify)
