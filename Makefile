# Quick start: `make demo` and `make test`. Both create .venv once and reuse it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS ?= cpu,train,hub,litert,onnx,openvino,jax,torch,keras-hub

# Test tiers by marker (see pyproject.toml): the fast tier leaves out what trains or runs a
# model beyond toy size, starts fresh interpreters or fetches from the package index.
FAST_MARKERS = not slow and not subprocess and not network
# Two workers; tests/support/schedule.py groups each module and starts the longest first.
XDIST = -n 2 --dist loadgroup --no-loadscope-reorder

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
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(XDIST) tests

test-fast: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(XDIST) -m "$(FAST_MARKERS)" tests

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
