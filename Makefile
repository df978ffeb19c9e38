# qslaw — the two commands a user needs: `make run` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
# DeepSpeed JIT-builds a CPU comm op on first use; keep the build beside this venv so another checkout's
# venv (different source paths) never invalidates it and forces a rebuild (~45 s)
export TORCH_EXTENSIONS_DIR := $(CURDIR)/$(VENV)/torch_extensions

.PHONY: install run test ui lint bench-quant promote compare clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch is pinned to the CPU wheel first so no resolver ever pulls another build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	@echo
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m steps.summary artifacts/evaluate/metrics.json
	@echo
	@$(BIN)/python -m steps.promote artifacts/export artifacts/evaluate
	@echo
	@echo "MLflow runs: sqlite:///$(CURDIR)/mlflow.db  —  browse them with 'make ui' (http://127.0.0.1:5000)"

test: install
	$(BIN)/python -m pytest -q

ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

lint: install
	$(BIN)/ruff check .

promote: install
	$(BIN)/python -m steps.promote artifacts/export artifacts/evaluate

compare: install
	$(BIN)/python -m steps.compare reports/comparison

bench-quant: install
	$(BIN)/python -m benchmarks.quant

clean:
	rm -rf $(VENV) artifacts mlruns mlartifacts mlflow.db
