"""`benchmark` subcommand: throughput against keras.applications (keras_inception.apps.benchmark);
with `--finetune`, `train` end to end before and after the feature cache
(benchmarks/finetune.py of a source checkout)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from keras_inception.cli.arguments import MODEL_CHOICES, image_size, non_negative_int, positive_int

# Mirrors keras_inception.apps.benchmark (not imported here: it imports Keras).
MODES = ("inference", "training")
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


FINETUNE_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "finetune.py"


def _finetune_module():
    """benchmarks/finetune.py, loaded from the source checkout this package runs from."""
    if not FINETUNE_SCRIPT.is_file():
        raise FileNotFoundError(
            f"--finetune runs {FINETUNE_SCRIPT}, which this installation lacks; run it from "
            "a source checkout of keras_inception.")
    spec = importlib.util.spec_from_file_location("keras_inception_finetune_bench",
                                                  FINETUNE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cmd_benchmark(args: argparse.Namespace) -> int:
    if args.finetune:
        finetune = _finetune_module()
        for model in args.models:
            finetune.main_from_args(args, model)
        return 0
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
    finetune = parser.add_argument_group(
        "fine-tuning end to end (--finetune; benchmarks/finetune.py)")
    finetune.add_argument("--finetune", action="store_true",
                          help="instead of throughput: time `train` (transfer recipe, "
                               "flowers_sample) of --models, split into setup, stage 1, "
                               "stage 2 and evaluation, against the code in --before, and one "
                               "inference pass; --json / --results record it")
    finetune.add_argument("--finetune-sizes", nargs="+", type=image_size, default=[160, 299],
                          help="image sizes (default 160 299)")
    finetune.add_argument("--before", default="/tmp/main_before",
                          help="source tree to compare with (default /tmp/main_before: "
                               "`git worktree add /tmp/main_before 8e93d82`)")
    finetune.add_argument("--head-epochs", type=positive_int, default=5)
    finetune.add_argument("--tune-epochs", type=positive_int, default=2)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark",
        help="inference/training img/s against keras.applications InceptionResNetV2",
        description="Alternating, median-of-rounds throughput of our networks and "
        "keras.applications.InceptionResNetV2 on the backend of KERAS_BACKEND.",
    )
    add_arguments(p)
    p.set_defaults(func=cmd_benchmark)
