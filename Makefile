# The two commands a newcomer needs: `make run` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Start scopelink: the web app on http://localhost:8000/ with the built-in simulator.
run: $(STAMP)
	$(BIN)/scopelink serve

## Lint, then run every test.
test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

## Run the benchmarks and update docs/benchmarks.md.
bench: $(STAMP)
	$(BIN)/python bench/bench_imaging.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
