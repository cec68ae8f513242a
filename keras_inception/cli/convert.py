"""`convert`: reference weights (timm, TF-slim, keras.applications, FaceNet's originals) ->
`.weights.h5`."""

from __future__ import annotations

import argparse
import os

from keras_inception.cli.arguments import (
    add_model_option,
    check_output,
    input_paths,
    positive_int,
)

SOURCES = ("timm", "slim", "keras", "facenet-keras", "facenet-pytorch")
# FaceNet's original files: the embedding size each source's weights have, and the input
# standardisation they expect (keras_inception.layers.FaceStandardization).
FACENET_SOURCES = {"facenet-keras": (128, "prewhiten"), "facenet-pytorch": (512, "fixed")}
FACENET = "facenet"


def _check_pairing(args: argparse.Namespace) -> None:
    """The source, the model and the options that only some of them take agree."""
    if args.source in FACENET_SOURCES and args.model != FACENET:
        raise ValueError(
            f"--from {args.source} holds FaceNet weights: convert them with --model {FACENET}; "
            f"received --model {args.model}."
        )
    if args.model == FACENET:
        if args.source in ("timm", "slim"):
            raise ValueError(
                f"--model {FACENET} converts from {', '.join(FACENET_SOURCES)} (or keras); "
                f"received --from {args.source}."
            )
        if args.classes is not None or args.no_top:
            raise ValueError(
                f"`--classes` and `--no-top` do not apply to --model {FACENET} (an embedding "
                "model without a classifier); use --embedding-dim."
            )
    elif args.embedding_dim is not None:
        raise ValueError(
            f"`--embedding-dim` applies to --model {FACENET}; received --model {args.model}."
        )


def _convert_facenet(args: argparse.Namespace):
    """(FaceNet model holding the converted weights, what was read, standardisation)."""
    from keras_inception.convert import facenet_files
    from keras_inception.models.facenet import FaceNet
    from keras_inception.presets import load_weights_file

    default_dim, standardization = FACENET_SOURCES.get(args.source, (128, None))
    if args.embedding_dim is None and args.source == "keras":
        from keras_inception.cli.embeddings import embedding_dim_of_file

        default_dim = embedding_dim_of_file(args.src) or default_dim
    dim = args.embedding_dim or default_dim
    model = FaceNet(weights=None, embedding_dim=dim)
    if args.source == "facenet-keras":
        facenet_files.load_facenet_keras_weights(model, args.src)
        what = "keras-facenet file"
    elif args.source == "facenet-pytorch":
        facenet_files.load_facenet_pytorch_weights(model, args.src)
        what = "facenet-pytorch state dict"
    else:
        load_weights_file(model, args.src)
        what = "Keras weights file"
    return model, what, standardization


# What SRC must be for each --from (for the one-line error on an unreadable file).
SOURCE_KINDS = {
    "timm": "a timm state dict (.safetensors or .npz)",
    "slim": "a TF-slim checkpoint (the prefix of its .index / .data files)",
    "keras": "a Keras weights file (.h5, .weights.h5, .keras)",
    "facenet-keras": "keras-facenet's facenet_keras.h5",
    "facenet-pytorch": "a facenet-pytorch state dict (.pt)",
}


def _read_source(args: argparse.Namespace, read):
    """`read()`, with the readers' own exceptions for a file that is not what --from says
    (SafetensorError, TensorFlow's DataLossError, unpickling errors, ...) as one line."""
    try:
        return read()
    except (ValueError, OSError, ImportError):
        raise  # already one line (the strict converters name the keys)
    except Exception as e:
        detail = (str(e).splitlines() or [""])[0][:200]
        raise ValueError(
            f"Cannot read SRC {args.src!r} as --from {args.source} ({type(e).__name__}: "
            f"{detail}): expected {SOURCE_KINDS[args.source]}."
        ) from None


def _convert_classifier(args: argparse.Namespace):
    """(model of --model holding the converted weights, what was read, head)."""
    from keras_inception import convert
    from keras_inception.models import get_builder
    from keras_inception.presets import load_weights_file

    include_top = not args.no_top
    classes = 1000 if args.classes is None else args.classes
    # A timm file is read first: one that is not a state dict is refused before the build.
    state = convert.read_state_dict(args.src) if args.source == "timm" else None
    model = get_builder(args.model)(include_top=include_top, weights=None, classes=classes)
    if state is not None:
        convert.load_timm_weights(model, state)
        what = f"timm state dict ({len(state)} tensors)"
    elif args.source == "slim":
        convert.load_slim_checkpoint(model, args.src)
        what = "TF-slim checkpoint"
    else:
        load_weights_file(model, args.src)
        what = "Keras weights file"
    return model, what, f"{classes} classes" if include_top else "no top"


def check_convert(args: argparse.Namespace) -> None:
    """Before TensorFlow is imported (nothing is built): a wrong, existing or unwritable
    --out, a wrong pairing, a missing SRC."""
    if not args.out.endswith(".weights.h5"):
        raise ValueError(f"`--out` must end with .weights.h5; received --out={args.out!r}.")
    check_output(args.out, overwrite=args.overwrite, suffix=".weights.h5", command="convert",
                 kind="file", inputs=input_paths(args))
    _check_pairing(args)
    if not os.path.exists(args.src) and not os.path.exists(args.src + ".index"):
        raise FileNotFoundError(f"SRC not found: {args.src!r}; expected "
                                f"{SOURCE_KINDS[args.source]}.")


def cmd_convert(args: argparse.Namespace) -> int:
    from keras_inception import convert
    from keras_inception.presets import file_hash

    # The arguments were checked before TensorFlow was imported (check_convert).
    standardization = None
    if args.model == FACENET:
        model, what, standardization = _read_source(args, lambda: _convert_facenet(args))
        head = f"{int(model.output_shape[-1])}-d embeddings"
    else:
        model, what, head = _read_source(args, lambda: _convert_classifier(args))
    out = convert.save_weights_verified(model, args.out, overwrite=args.overwrite, arg="--out")
    print(f"Converted {what} {args.src}")
    print(f"  into {args.model} ({head}, {len(model.weights)} weights, "
          f"{model.count_params():,} parameters), verified by reloading")
    print(f"  -> {out}")
    print(f"sha256: {file_hash(out, 'sha256')}")
    if standardization == "prewhiten":
        print("Input standardisation: prewhiten (what FaceNet(weights=FILE, "
              "include_preprocessing=True), embed and verify use for a .weights.h5).")
    elif standardization is not None:
        print(f"Input standardisation: {standardization} ((x - 127.5) / 128), not the prewhiten "
              "a .weights.h5 gets by default: pass --standardization fixed to embed/verify, "
              "or keras_inception.embeddings.preprocess_input(x, 'fixed') before the model.")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert timm / TF-slim / keras.applications / FaceNet weights to a .weights.h5",
        description=(
            "Convert reference weights into a verified Keras weights file that "
            "`weights=PATH` loads. SRC: a timm state dict (.safetensors or .npz), a TF-slim "
            "checkpoint prefix, a Keras weights file (.h5, .weights.h5), keras-facenet's "
            "facenet_keras.h5 (--from facenet-keras) or a facenet-pytorch state dict "
            "(--from facenet-pytorch, .pt; needs torch), the last two with --model facenet."
        ),
    )
    p.add_argument("--from", dest="source", choices=SOURCES, required=True,
                   help="format of SRC")
    p.add_argument("src", metavar="SRC", help="file (or checkpoint prefix) to convert")
    add_model_option(p, files=False)
    p.add_argument("--classes", type=positive_int, default=None,
                   help="classes of the source's classifier (default 1000; not for facenet)")
    p.add_argument("--no-top", action="store_true",
                   help="convert into a model without the head (the classifier is dropped)")
    p.add_argument(
        "--embedding-dim", type=positive_int, default=None, metavar="D",
        help="--model facenet: embedding size (default: the source's, 128 for facenet-keras, "
             "512 for facenet-pytorch; read from a keras file)",
    )
    p.add_argument("--out", required=True, metavar="DST.weights.h5", help="output file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=cmd_convert, check=check_convert)
