"""`python -m keras_inception.cli`: the same as the `keras-inception` command."""

import sys

from keras_inception.cli import main

sys.exit(main())
