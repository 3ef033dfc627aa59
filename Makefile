# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch first: on CPU machines `pip install torch==2.13.0` takes the local CPU wheel,
# so nothing that depends on torch pulls the multi-GB CUDA build. A user who already
# has torch (e.g. a GPU build) keeps it: TORCH_SPEC= skips this step.
TORCH_SPEC ?= torch==2.13.0

.PHONY: env test demo bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	@if [ -n "$(TORCH_SPEC)" ]; then $(PIP) install --quiet "$(TORCH_SPEC)"; fi
	$(PIP) install --quiet -e ".[dev,lens]"
	touch $@

env: $(VENV)/.installed

test: env
	$(PY) -m pytest -q

demo: env
	$(PY) benchmarks/core.py --small

bench: env
	$(PY) benchmarks/core.py

clean:
	rm -rf $(VENV) build *.egg-info
