"""What the tests, benchmarks and notebooks share and the package must not ship.

Not part of `keras_inception` (never installed by pip: `setup.cfg` packages only
`keras_inception*`); importable from a clone of the repository, whose root the tests
(`tests/conftest.py`), the benchmarks and the notebooks put on `sys.path`. Its
third-party dependencies are test-only (`requirements-test.txt`), e.g. `faceie`
(GPL-3.0), which nothing under `keras_inception/` may import.

* `faces`: FaceNet-style face crops of photos with the MTCNN detector of `faceie`;
* `random_backbone`: a classifier from a random backbone, for checks without
  pretrained weights (the export tests, `benchmarks/tflite_latency.py`).

The rule (tests/test_layout.py): `keras_inception/` imports neither `testing_support`
nor `tests`; `benchmarks/` and `testing_support/` import nothing from `tests/`.
"""
