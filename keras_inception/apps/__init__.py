"""Applications built on the library and on `keras_inception.train`.

* `demo`: `keras-inception demo` / `make demo` (fine-tune, evaluate, export);
* `benchmark`: throughput against keras.applications (`keras-inception benchmark`);
* `random_backbone`: a classifier from a random backbone, for checks without
  pretrained weights (benchmarks/tflite_latency.py, the export tests).
"""
