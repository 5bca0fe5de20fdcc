# The two front-door commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo-output

.PHONY: setup demo test lint clean

$(BIN)/cooccur: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/cooccur

setup: $(BIN)/cooccur

# Train on the bundled sample, index into the embedded backend, recommend.
demo: setup
	$(BIN)/cooccur demo --out $(DEMO_DIR)

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
