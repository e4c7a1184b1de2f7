# The two commands a newcomer needs: `make run` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# TypeScript, to type-check the browser code (tests/test_ui_types.py).
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

## Start scopelink: the web app on http://localhost:8000/ with the built-in simulator.
run: $(STAMP)
	$(BIN)/scopelink serve

## Lint, then run every test.
test: $(STAMP) $(NODE_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/pytest -q

lint: $(STAMP) $(NODE_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	npx --no-install tsc -p tsconfig.json

## Run the benchmarks and update docs/benchmarks.md (the rate-cap and remote ones need root:
## network namespaces).
bench: $(STAMP)
	$(BIN)/python bench/bench_imaging.py
	$(BIN)/python bench/bench_pipeline.py
	$(BIN)/python bench/bench_webrtc_encode.py
	$(BIN)/python bench/bench_live_browser.py
	$(BIN)/python bench/bench_passthrough.py
	$(BIN)/python bench/bench_quality.py
	$(BIN)/python bench/bench_noise_floor.py
	$(BIN)/python bench/bench_rate_cap.py
	$(BIN)/python bench/bench_rate_cap.py --trace
	$(BIN)/python bench/bench_rate_cap.py --trace --cap 4000 --cap-on 0 --cap-off 50
	$(BIN)/python bench/bench_commands.py
	$(BIN)/python bench/bench_datachannel.py
	$(BIN)/python bench/bench_proxy.py
	$(BIN)/python bench/bench_broker.py
	$(BIN)/python bench/bench_remote.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache
