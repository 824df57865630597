# The README's two commands: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1
# make test's worker processes (pytest-xdist): each takes whole test files, in the order
# tests/conftest.py gives them (the longest first), and builds the session fixtures its files use.
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

.PHONY: setup setup-test demo baseline promote compare test test-fast test-all lint bench clean

setup:  ## system packages + .venv + the project (idempotent)
	@bash scripts/setup.sh

setup-test:  ## setup, plus what only the tests need (chromium, npm, the reports' offline scripts)
	@bash scripts/setup.sh --test

demo: setup  ## generate the demo data, run the DVC pipeline to the bento and the drift reference, print the results
	dvc repro package reference
	mimicflow report --check

baseline:  ## commit the run as the DVC baseline: dvc.lock and the metrics and plots files
	git add dvc.lock pipelines $$(mimicflow outputs --versioned | while read -r p; do [ -e "$$p" ] && echo "$$p"; done)
	git diff --cached --quiet || git commit -m "DVC baseline: dvc.lock, metrics and plots"

promote:  ## rebuild the bento outside any experiment: mimicflow-emi:latest (the served bento)
	dvc repro --force --single-item package

compare: demo  ## the comparison table: each recipe's demo flavour, each system, each single input
	dvc repro pipelines/compare/dvc.yaml
	mimicflow report

lint: setup  ## layout (ruff format), lint rules (ruff check) and the layer rule (import-linter contracts)
	ruff format --check src tests bench flows scripts
	ruff check src tests bench flows scripts
	lint-imports --no-logo

test: setup-test lint  ## the default test run (what CI runs) on TEST_WORKERS processes, with its 15 slowest steps
	pytest -m "not slow" -q --durations=15 $(XDIST)

test-fast: setup-test lint  ## the unit tier on TEST_WORKERS processes: offline, no DVC, servers or training runs, nothing written in the repo
	pytest -m "not slow and not pipeline and not heavy" -q $(XDIST)

test-all: setup-test lint  ## every test, slow ones included
	pytest -q $(XDIST)

bench: setup  ## speed figures (printed as tables)
	python bench/bench_data.py
	python bench/bench_perception.py
	python bench/bench_features.py
	python bench/bench_training.py
	python bench/bench_adapt.py
	python bench/bench_serving.py
	python bench/soak_serving.py
	python bench/bench_small_faces.py

clean:  ## remove every output the DVC pipelines declare (listed by DVC) and the reports (not the venv, not the DVC cache)
	mimicflow outputs | xargs -r rm -rf --
	rm -rf reports dvc_plots
