# The two commands of the README: `make demo` and `make test`.
# Each creates (or reuses) the virtual environment .venv by itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.genlab-installed
# benchmarks run in their own environment: genlab plus the peers they compare against
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.genlab-installed

.PHONY: demo test bench venv clean

venv: $(STAMP)

# torch first, pinned, so pip takes the CPU wheel on disk instead of a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test,ray,tensorboard,lightning]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m genlab.demo

test: $(STAMP)
	$(BIN)/python -m pytest

$(BENCH_STAMP): pyproject.toml benchmarks/requirements-peers.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(BENCH_VENV)/bin/python -m pip install --quiet -e '.[test,ray,tensorboard,lightning]'
	$(BENCH_VENV)/bin/python -m pip install --quiet --no-deps -r benchmarks/requirements-peers.txt
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python -m benchmarks

clean:
	rm -rf $(VENV) $(BENCH_VENV) runs
