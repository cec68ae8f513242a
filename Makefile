# Quick start: `make demo` and `make test`. Both create .venv once and reuse it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS ?= cpu,dev,hub,litert,onnx,jax,torch

.PHONY: venv demo test lint clean

$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/keras-inception demo

test: $(STAMP)
	$(VENV)/bin/ruff check keras_inception tests benchmarks
	$(PY) -m pytest -n 2 --dist loadfile tests

lint: $(STAMP)
	$(VENV)/bin/ruff check keras_inception tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
