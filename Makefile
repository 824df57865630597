# The README's two commands: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1

.PHONY: setup demo test test-all bench clean

setup:  ## system packages + .venv + the project (idempotent)
	@bash scripts/setup.sh

demo: setup  ## generate the demo data, run the whole DVC pipeline, print the results
	dvc repro
	mimicflow report

test: setup  ## the default test run (what CI runs)
	pytest -m "not slow" -q

test-all: setup  ## every test, slow ones included
	pytest -q

bench: setup  ## speed figures (printed as tables)
	python bench/bench_data.py
	python bench/bench_perception.py
	python bench/bench_features.py
	python bench/bench_training.py
	python bench/bench_serving.py

clean:  ## remove pipeline outputs (not the venv)
	rm -rf data/demo data/validated models/pretrained reports
