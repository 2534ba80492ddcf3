# `make demo` and `make test` do all set-up themselves from a clean clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo
# test modules run on this many workers (pytest-xdist, each module kept on one worker for its fixtures)
TEST_WORKERS ?= 2
# the browser test drives Debian's chromium + chromedriver (installed by `make browser` when run as root);
# `make test BROWSER=no` leaves it out and needs neither
BROWSER ?= yes
# the distributed test starts Debian's redis-server and PostgreSQL (installed by `make services` when run as
# root); `make test SERVICES=no` leaves it out and needs neither
SERVICES ?= yes

.PHONY: install browser services demo test lint ui validate clean bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

demo: install
	$(BIN)/retrain demo --dir $(DEMO_DIR) --fresh

browser:
	@bash scripts/ensure-browser

services:
	@bash scripts/ensure-services

ifeq ($(SERVICES),no)
TEST_SERVICES :=
LEAVE_OUT_SERVICES := not services
else
TEST_SERVICES := services
LEAVE_OUT_SERVICES :=
endif

ifeq ($(BROWSER),no)
test: $(TEST_SERVICES) install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope -m "not browser$(if $(LEAVE_OUT_SERVICES), and $(LEAVE_OUT_SERVICES))"
else
test: browser $(TEST_SERVICES) install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope $(if $(LEAVE_OUT_SERVICES),-m "$(LEAVE_OUT_SERVICES)")
endif

# ruff (lint and format) and mypy; runs all three, fails if any finds something
LINTED := retrain_assets retrain_assets_tests bench
lint: install
	$(BIN)/ruff check $(LINTED); status=$$?; \
	$(BIN)/ruff format --check $(LINTED) || status=1; \
	$(BIN)/mypy retrain_assets && exit $$status

ui: install
	$(BIN)/retrain --config $(DEMO_DIR)/retrain.yaml ui

bench: install
	bash scripts/ensure-wrk
	bash scripts/ensure-dvc
	$(BIN)/python bench/run.py

validate: install
	$(BIN)/dagster definitions validate -w workspace.yaml

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .ruff_cache .mypy_cache build *.egg-info
