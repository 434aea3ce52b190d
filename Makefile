# Two commands do all the set-up: `make run` (a small real search) and `make test`.
# Both create .venv when it is missing and install the project into it.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q
# Raw datasets shipped beside the repository (read-only); copied to a writable data root.
SHARED_DATASETS ?= ../shared/datasets
export GNN_SEARCH_DATA ?= $(HOME)/.cache/gnn-search/datasets
TRIALS ?= 8
CONCURRENCY ?= 2

.PHONY: run test lint bench data venv clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0           # first: the CPU wheel; a looser pin pulls a CUDA build
	$(PIP) -e '.[dev]'
	touch $@

# The reference SplineConv kernel, only for the equivalence test; it builds against the
# installed torch (about 3 minutes the first time, cached by pip afterwards).
$(BIN)/.reference: $(BIN)/.installed
	$(PIP) --no-build-isolation torch-spline-conv==1.2.2
	touch $@

venv: $(BIN)/.installed

data:
	@if [ -d "$(SHARED_DATASETS)" ]; then \
		mkdir -p "$(GNN_SEARCH_DATA)" && cp -rn "$(SHARED_DATASETS)"/. "$(GNN_SEARCH_DATA)"/ && \
		echo "datasets: $(SHARED_DATASETS) -> $(GNN_SEARCH_DATA)"; \
	fi

run: venv data
	$(BIN)/gnn-search run --trials $(TRIALS) --concurrency $(CONCURRENCY) $(ARGS)

test: venv $(BIN)/.reference data
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: venv $(BIN)/.reference data
	$(BIN)/python bench/spline_conv.py --quick
	$(BIN)/python bench/compression.py --quick
	$(BIN)/python bench/measurement.py --quick
	$(BIN)/python bench/inference.py --quick
	$(BIN)/python bench/overhead.py --quick
	$(BIN)/python bench/search_efficiency.py --quick
	$(BIN)/python bench/search_quality.py --quick
	$(BIN)/python bench/baselines.py --quick
	$(BIN)/python bench/early_stopping.py --quick
	$(BIN)/python bench/scale.py --quick

clean:
	rm -rf $(VENV) mlflow.db mlartifacts ray_results gnn-search-trial .pytest_cache
