# meshnode — `make demo` runs a local mesh, `make test` runs the test suite.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=
# Pretrained models shipped inside registry wheels (inference/catalog.py). Wheels only (--no-deps):
# we take their .onnx files and never import them (silero-vad wants torch, rapidocr opencv).
MODEL_PACKAGES := rapidocr==3.10.0 silero-vad==6.2.3

.PHONY: demo test test-long test-fast bench clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps $(MODEL_PACKAGES)
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/meshnode demo

# The suite: unit, property, simulation and real multi-process integration tests (under 10 min on 2 cores).
test: $(VENV)/.installed
	$(PY) -m pytest -m "not long" $(PYTEST_ARGS)

# The minutes-long tests (1,000-node simulations, chaos runs, the docs run as written, the demo, the browser); CI runs them after `make test`.
test-long: $(VENV)/.installed
	$(PY) -m pytest -m long $(PYTEST_ARGS)

# Only what runs in under a second per test (no real processes).
test-fast: $(VENV)/.installed
	$(PY) -m pytest -m "not slow and not integration" $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(PY) -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
