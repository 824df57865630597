# The README's two commands: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1

.PHONY: setup demo compare test test-fast test-all lint bench clean

setup:  ## system packages + .venv + the project (idempotent)
	@bash scripts/setup.sh

demo: setup  ## generate the demo data, run the DVC pipeline to the bento and the drift reference, print the results
	dvc repro package reference
	mimicflow report --check

compare: demo  ## the comparison table: each recipe's demo flavour, each system, each single input
	dvc repro compare
	mimicflow report

lint: setup  ## layout (ruff format), lint rules (ruff check) and the layer rule (import-linter contracts)
	ruff format --check src tests bench flows scripts
	ruff check src tests bench flows scripts
	lint-imports --no-logo

test: lint  ## the default test run (what CI runs), with its 15 slowest steps
	pytest -m "not slow" -q --durations=15

test-fast: lint  ## the unit tier: offline, no DVC, servers or training runs, nothing written in the repo
	pytest -m "not slow and not pipeline and not heavy" -q

test-all: lint  ## every test, slow ones included
	pytest -q

bench: setup  ## speed figures (printed as tables)
	python bench/bench_data.py
	python bench/bench_perception.py
	python bench/bench_features.py
	python bench/bench_training.py
	python bench/bench_adapt.py
	python bench/bench_serving.py

clean:  ## remove pipeline outputs (not the venv)
	rm -rf data/demo data/validated models/pretrained reports
