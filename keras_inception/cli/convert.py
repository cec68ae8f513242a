"""`convert`: reference weights (timm, TF-slim, keras.applications) -> `.weights.h5`."""

from __future__ import annotations

import argparse
import os

from keras_inception.cli.core import MODEL_CHOICES

SOURCES = ("timm", "slim", "keras")


def cmd_convert(args: argparse.Namespace) -> int:
    from keras_inception import convert
    from keras_inception.models import get_builder
    from keras_inception.weights import file_hash, load_weights_file

    if not args.out.endswith(".weights.h5"):
        raise ValueError(f"`--out` must end with .weights.h5; received --out={args.out!r}.")
    if args.classes < 1:
        raise ValueError(f"`--classes` must be a positive integer; received {args.classes}.")
    if not os.path.exists(args.src) and not os.path.exists(args.src + ".index"):
        raise FileNotFoundError(f"SRC not found: {args.src!r}.")
    include_top = not args.no_top
    builder = get_builder(args.model)

    def fresh():
        return builder(include_top=include_top, weights=None, classes=args.classes)

    model = fresh()
    if args.source == "timm":
        state = convert.read_state_dict(args.src)
        convert.load_timm_weights(model, state)
        what = f"timm state dict ({len(state)} tensors)"
    elif args.source == "slim":
        convert.load_slim_checkpoint(model, args.src)
        what = "TF-slim checkpoint"
    else:
        load_weights_file(model, args.src)
        what = "Keras weights file"
    out = convert.save_weights_verified(model, args.out, fresh)
    head = f"{args.classes} classes" if include_top else "no top"
    print(f"Converted {what} {args.src}")
    print(f"  into {args.model} ({head}, {len(model.weights)} weights, "
          f"{model.count_params():,} parameters), verified by reloading")
    print(f"  -> {out}")
    print(f"sha256: {file_hash(out, 'sha256')}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert timm / TF-slim / keras.applications weights to a .weights.h5",
        description=(
            "Convert reference weights into a verified Keras weights file that "
            "`weights=PATH` loads. SRC: a timm state dict (.safetensors or .npz), a TF-slim "
            "checkpoint prefix, or a Keras weights file (.h5, .weights.h5)."
        ),
    )
    p.add_argument("--from", dest="source", choices=SOURCES, required=True,
                   help="format of SRC")
    p.add_argument("src", metavar="SRC", help="file (or checkpoint prefix) to convert")
    p.add_argument("--model", choices=MODEL_CHOICES, required=True, help="architecture")
    p.add_argument("--classes", type=int, default=1000,
                   help="classes of the source's classifier (default 1000)")
    p.add_argument("--no-top", action="store_true",
                   help="convert into a model without the head (the classifier is dropped)")
    p.add_argument("--out", required=True, metavar="DST.weights.h5", help="output file")
    p.set_defaults(func=cmd_convert)
