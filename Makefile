# One command sets up and runs the main job; one command sets up and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup quickstart test test-faults lint bench-quick bench readme clean

setup: $(VENV)/.installed

# torch is pinned to the CPU build first so the package install never pulls a multi-GB CUDA wheel
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[all]"
	touch $@

quickstart: setup          ## collect demos -> pretrain -> evaluate, prints a table, saves a plot (~5 min)
	$(BIN)/steerlab quickstart

test: setup                ## the test suite CI runs (the long fault-injection run is left to test-faults)
	$(BIN)/python -m pytest -q

test-faults: setup         ## kill a small finetune >= 20 times (every snapshot part + random moments), resume, compare bit for bit
	$(BIN)/python -m pytest -q -m faults tests/reliability

lint: setup
	$(BIN)/ruff check .

bench-quick: setup         ## every benchmark in --quick mode
	$(BIN)/python benchmarks/pretrain.py --quick
	$(BIN)/python benchmarks/finetune.py --quick
	$(BIN)/python benchmarks/privacy.py --quick
	$(BIN)/python benchmarks/make_readme.py

bench: setup               ## the full benchmark suite (hours; resumes where it stopped)
	$(BIN)/python benchmarks/pretrain.py
	$(BIN)/python benchmarks/finetune.py
	$(BIN)/python benchmarks/privacy.py
	$(BIN)/python benchmarks/make_readme.py

readme: setup              ## regenerate README tables from benchmarks/results/*.json
	$(BIN)/python benchmarks/make_readme.py

clean:
	rm -rf runs .pytest_cache
