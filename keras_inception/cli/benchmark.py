"""`benchmark` subcommand: throughput against keras.applications (keras_inception.apps.benchmark)."""

from __future__ import annotations

import argparse

from keras_inception.cli.arguments import MODEL_CHOICES, image_size, non_negative_int, positive_int

# Mirrors keras_inception.apps.benchmark (not imported here: it imports Keras).
MODES = ("inference", "training")
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def cmd_benchmark(args: argparse.Namespace) -> int:
    from keras_inception.apps.benchmark import main_from_args

    return main_from_args(args)


def add_arguments(parser) -> None:
    """The benchmark's command-line options (shared by the script and the CLI)."""
    parser.add_argument("--models", nargs="+", default=["inception_resnet_v2"],
                        choices=MODEL_CHOICES, help="our networks to measure")
    parser.add_argument("--batch-sizes", nargs="+", type=positive_int, default=[8])
    parser.add_argument("--image-size", type=image_size, default=299)
    parser.add_argument("--policies", nargs="+", default=["float32"], choices=POLICIES)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--rounds", type=positive_int, default=5, help="timed rounds (median taken)")
    parser.add_argument("--steps", type=positive_int, default=3, help="steps per timed round")
    parser.add_argument("--warmup", type=non_negative_int, default=2, help="untimed steps (compile)")
    parser.add_argument("--no-xla", action="store_true", help="TF/JAX without jit_compile")
    parser.add_argument("--fold-bn", action="store_true",
                        help="also measure inference with BatchNorm folded into the convs")
    parser.add_argument("--remat", action="store_true",
                        help="also measure training under keras.RematScope('activations')")
    parser.add_argument("--json", default=None, help="write the measurements here")
    parser.add_argument("--results", default=None,
                        help="append a Markdown table to this file (e.g. benchmarks/RESULTS.md)")
    parser.add_argument("--title", default="Throughput", help="heading of the Markdown section")
    parser.add_argument("--ratios-only", action="store_true",
                        help="leave absolute img/s out of the Markdown table (noisy machines)")
    parser.add_argument("--bound", type=float, default=None,
                        help="img/s upper bound; adds the fraction reached to the table")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark",
        help="inference/training img/s against keras.applications InceptionResNetV2",
        description="Alternating, median-of-rounds throughput of our networks and "
        "keras.applications.InceptionResNetV2 on the backend of KERAS_BACKEND.",
    )
    add_arguments(p)
    p.set_defaults(func=cmd_benchmark)
