# Two commands: `make run` (set up and start everything) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test install install-dev migrate demo lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

migrate: install
	$(BIN)/python manage.py migrate --noinput

demo: migrate
	$(BIN)/python manage.py seed_demo --if-empty

run: demo
	@$(BIN)/python manage.py dev_admin
	@echo "  Starting web, Celery worker and Celery beat at http://127.0.0.1:8000 (Ctrl-C stops all three)"
	$(BIN)/honcho start

test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff.toml and .importlinter hold the rules.
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports

bench: install-dev
	$(BIN)/python bench/run.py

clean:
	rm -rf var staticfiles .pytest_cache
