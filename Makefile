VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test lint bench

$(VENV)/.mavis-installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh

install: $(VENV)/.mavis-installed

## demo: guided answers from the packaged default model at a few weight settings
demo: install
	$(VENV)/bin/mavis demo

## test: the test suite (tiny models built by the tests; a few use the packaged defaults)
test: install
	bash scripts/install.sh --browser
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
