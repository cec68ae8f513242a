"""Throughput benchmark: our networks against keras.applications' InceptionResNetV2.

    KERAS_BACKEND=tensorflow python benchmarks/throughput.py \
        --models inception_v4 inception_resnet_v1 inception_resnet_v2 \
        --batch-sizes 4 --image-size 160 --json out.json --results benchmarks/RESULTS.md

Same as `keras-inception benchmark`; see keras_inception/apps/benchmark.py (the measurements),
keras_inception/cli/benchmark.py (the options) and README.md.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_inception.apps.benchmark import main_from_args  # noqa: E402
from keras_inception.cli.benchmark import add_arguments  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser)
    sys.exit(main_from_args(parser.parse_args()))
