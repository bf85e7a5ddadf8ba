# ISH Chat Instance Manager. A newcomer needs two commands:
#   make run    virtualenv, .env with generated secrets, migrate, admin user, then web + worker + beat
#   make test   the test suite
# Only prerequisite: Python 3.11+ as `python3` (override with `make PYTHON=python3.12 ...`).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# Written once the requirements are installed; newer requirements files trigger a re-install.
STAMP := $(VENV)/.requirements-installed
REQUIREMENTS := requirements.txt requirements-dev.txt

# Extra arguments for pytest, e.g. `make test PYTEST_ARGS="-k health -x"` or `PYTEST_ARGS="-n 2"`.
PYTEST_ARGS ?=

.PHONY: help venv env migrate admin collectstatic run test lint bench clean

help: ## List the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

venv: $(STAMP) ## Create .venv and install requirements-dev.txt (fast when nothing changed)

$(STAMP): $(REQUIREMENTS)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed; '$(PYTHON)' is $$($(PYTHON) --version 2>&1)." >&2; exit 1; }
	@test -x $(PY) || { echo "Creating $(VENV) with $$($(PYTHON) --version)"; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

env: ## Write .env with generated secrets if it is missing (never overwrites)
	@$(PYTHON) scripts/write_env.py

migrate: venv env ## Apply database migrations and create missing default periodic tasks
	$(PY) manage.py migrate --noinput
	$(PY) manage.py setup_periodic_tasks

collectstatic: venv env ## Collect static files for whitenoise
	$(PY) manage.py collectstatic --noinput --verbosity 0

admin: migrate ## Create the admin superuser if none exists (password printed once)
	$(PY) manage.py ensure_admin

run: venv env migrate collectstatic admin ## Set everything up, then run web, worker and beat (Ctrl-C stops)
	$(PY) scripts/run.py

# The suite must see only the shell's environment plus pyproject's pytest-env
# defaults, never a developer's .env (which may point at another database).
test: venv ## Run the test suite (uses DATABASE_URL / REDIS_URL when exported)
	INSTANCE_MANAGER_DOTENV=false $(PY) -m pytest $(PYTEST_ARGS)

lint: venv ## ruff check and mypy
	$(BIN)/ruff check .
	INSTANCE_MANAGER_DOTENV=false SECRET_KEY="$${SECRET_KEY:-lint-only-secret-key}" $(BIN)/mypy .

bench: venv ## Run the benchmarks in bench/*.py, if any
	@shopt -s nullglob; scripts=(bench/*.py); \
	if [ $${#scripts[@]} -eq 0 ]; then echo "No benchmarks in bench/ yet."; exit 0; fi; \
	for script in "$${scripts[@]}"; do echo "== $$script"; $(PY) "$$script"; done

clean: ## Remove caches and collected static files (keeps .venv, .env and the database)
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis test-artifacts var/staticfiles
