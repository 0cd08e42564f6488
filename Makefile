# One command sets up and runs the main job; one command sets up and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup quickstart test test-faults test-lerobot lint bench-quick bench readme clean

setup: $(VENV)/.installed

# torch is pinned to the CPU build first so the package install never pulls a multi-GB CUDA wheel
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[all]"
	touch $@

quickstart: setup          ## base from imperfect demos -> ZPRL -> sealed personalization; one table, one figure (~8 min)
	$(BIN)/steerlab quickstart

test: setup                ## the test suite CI runs (the long fault-injection run is left to test-faults)
	$(BIN)/python -m pytest -q

test-faults: setup         ## kill a small finetune >= 20 times (every snapshot part + random moments), resume, compare bit for bit
	$(BIN)/python -m pytest -q -m faults tests/reliability

# LeRobot interop needs Python >= 3.12 and torch < 2.12, so it gets its own venv (several GB: see README).
# torch comes from the CPU wheel index when that is reachable, else from PyPI (a CUDA build; it still runs on CPU).
# (pyenv's shim is on PATH but fails when 3.12 is not the selected version, so try the real binary first)
PYTHON312    ?= $(shell ls $(HOME)/.pyenv/versions/3.12*/bin/python3.12 2>/dev/null | tail -n 1 || true)
PYTHON312    := $(or $(PYTHON312),$(shell command -v python3.12 2>/dev/null))
LEROBOT_VENV ?= .venv-lerobot
LEROBOT_TORCH := "torch>=2.7,<2.12" "torchvision>=0.22,<0.27"

$(LEROBOT_VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON312)" || { echo "test-lerobot needs python3.12 (set PYTHON312=/path/to/python3.12)"; exit 2; }
	$(PYTHON312) -m venv $(LEROBOT_VENV)
	$(LEROBOT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LEROBOT_VENV)/bin/python -m pip install --quiet --retries 0 --timeout 15 $(LEROBOT_TORCH) \
	    --index-url https://download.pytorch.org/whl/cpu 2>/dev/null \
	  || { echo "CPU wheel index unreachable: installing PyPI's torch (a CUDA build, ~4.5 GB; runs on CPU)"; \
	       $(LEROBOT_VENV)/bin/python -m pip install --quiet $(LEROBOT_TORCH); }
	$(LEROBOT_VENV)/bin/python -m pip install --quiet -e ".[lerobot,dev]"
	touch $@

test-lerobot: $(LEROBOT_VENV)/.installed   ## LeRobot interop tests in a Python 3.12 venv
	$(LEROBOT_VENV)/bin/python -m pytest -q tests/lerobot_interop tests/data/test_lerobot_format.py tests/data/test_dataset.py tests/data/test_image_dataset.py tests/data/test_video_dataset.py

lint: setup
	$(BIN)/ruff check .

bench-quick: setup         ## every benchmark in --quick mode
	$(BIN)/steerlab bench pretrain --quick
	$(BIN)/steerlab bench finetune --quick
	$(BIN)/steerlab bench privacy --quick
	$(BIN)/steerlab bench throughput --quick
	$(BIN)/steerlab bench vector_efficiency --quick
	$(BIN)/steerlab bench personalize_own --quick
	$(BIN)/steerlab bench make_readme

bench: setup               ## the full benchmark suite (hours; resumes where it stopped)
	$(BIN)/steerlab bench pretrain
	$(BIN)/steerlab bench finetune
	$(BIN)/steerlab bench privacy
	$(BIN)/steerlab bench throughput
	$(BIN)/steerlab bench vector_efficiency
	$(BIN)/steerlab bench personalize_own
	$(BIN)/steerlab bench make_readme

readme: setup              ## regenerate README tables from benchmarks/results/*.json
	$(BIN)/steerlab bench make_readme

clean:
	rm -rf runs .pytest_cache
