# `make demo` and `make test` do all set-up themselves from a clean clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo
# test modules run on this many workers (pytest-xdist, each module kept on one worker for its fixtures)
TEST_WORKERS ?= 2

.PHONY: install demo test ui validate clean bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

demo: install
	$(BIN)/retrain demo --dir $(DEMO_DIR) --fresh

test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope

ui: install
	$(BIN)/retrain --config $(DEMO_DIR)/retrain.yaml ui

bench: install
	$(BIN)/python bench/run.py

validate: install
	$(BIN)/dagster definitions validate -w workspace.yaml

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache build *.egg-info
