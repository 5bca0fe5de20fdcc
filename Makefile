# The two front-door commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR := demo-output

.PHONY: setup demo test lint clean search-nodes

$(BIN)/cooccur: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/cooccur

setup: $(BIN)/cooccur

# The main job end to end on the bundled sample: store the events, train on the store (the
# one source of truth), index into the embedded backend, recommend for a known user and for
# a brand-new one; then add new events incrementally (update + index --changed-only) and ask
# about a new item.
COOCCUR := $(BIN)/cooccur -c sample/cooccur.toml
demo: setup
	rm -rf $(DEMO_DIR)
	$(COOCCUR) events import sample/events.jsonl
	$(COOCCUR) train --from-store -o $(DEMO_DIR)/model
	$(COOCCUR) index $(DEMO_DIR)/model
	@echo "--- recommendations for u1 (history from the event store):"
	$(COOCCUR) recommend --user u1 --num 5
	@echo "--- a brand-new user who viewed i3, i7 and i12 (inline history, no retrain):"
	$(COOCCUR) recommend --history-json '{"view": ["i3", "i7", "i12"]}' --num 5
	@echo "--- new events arrive; fold them into the model (no retrain) and re-index what changed:"
	$(COOCCUR) events import sample/new-events.jsonl
	$(COOCCUR) update $(DEMO_DIR)/model --from-store
	$(COOCCUR) index $(DEMO_DIR)/model --changed-only
	$(COOCCUR) recommend --item i200 --num 5

test: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

# The live-test OpenSearch and Elasticsearch nodes: jars from Maven Central, launchers by javac.
search-nodes:
	searchnode/build.sh

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
