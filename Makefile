# Quick start: `make demo` and `make test`. Both create .venv once and reuse it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS ?= cpu,train,hub,litert,onnx,jax,torch

# The library's quick tier: builders, layers, preprocessing, validation, features,
# converters, layout and CLI parsing (a few minutes); `make test` runs everything.
FAST_TESTS = tests/test_models.py tests/test_layers.py tests/test_imagenet.py \
	tests/test_validation.py tests/test_features.py tests/test_convert.py tests/test_layout.py \
	tests/test_compat.py tests/test_cli.py tests/test_weights_compat.py

.PHONY: venv demo test test-fast lint clean

$(STAMP): setup.cfg pyproject.toml requirements-test.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]" -r requirements-test.txt
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/keras-inception demo

test: $(STAMP)
	$(VENV)/bin/ruff check keras_inception tests benchmarks
	$(PY) -m pytest -n 2 --dist loadfile tests

test-fast: $(STAMP)
	$(VENV)/bin/ruff check keras_inception tests benchmarks
	$(PY) -m pytest -n 2 --dist loadfile $(FAST_TESTS)

lint: $(STAMP)
	$(VENV)/bin/ruff check keras_inception tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
