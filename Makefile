# genfoundry: `make repro` runs the default pipeline end to end; `make test` runs the test suite
# (under 10 minutes on 2 cores); `make test-slow` runs the end-to-end drills (CI runs both).
# Both create .venv first. TORCH pins the torch build: the default is the CPU wheel this machine kind
# keeps on disk; on a CUDA machine use e.g. `make repro TORCH="torch==2.13.0"` from a CUDA-enabled index.
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
ACTIVATE := . $(VENV)/bin/activate &&

.PHONY: setup repro test test-slow lint bench clean-runs

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

repro: setup
	$(ACTIVATE) MLFLOW_DISABLE_TELEMETRY=true dvc repro

test: setup
	$(ACTIVATE) MLFLOW_DISABLE_TELEMETRY=true pytest -m "not slow"

test-slow: setup  # full dvc repro of a tiny project, failure drills, ray job submit, Ray Tune, transfer stages, the two-node cluster, a dataset 3x the worker memory cap (~30 minutes)
	$(ACTIVATE) MLFLOW_DISABLE_TELEMETRY=true pytest -m slow

lint: setup
	$(VENV)/bin/ruff check .

clean-runs:  # forget Ray checkpoints (the next train starts from scratch instead of resuming)
	rm -rf ray_results
