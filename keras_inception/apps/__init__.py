"""Applications built on the library and on `keras_inception.train`.

* `demo`: `keras-inception demo` / `make demo` (fine-tune, evaluate, export);
* `benchmark`: throughput against keras.applications (`keras-inception benchmark`).

Test and benchmark scaffolding (face cropping, a random backbone) lives outside the
package, in the repository's `tests/support/`.
"""
