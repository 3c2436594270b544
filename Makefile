# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lab bench examples native clean

setup: $(STAMP) native

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,lab]'
	touch $(STAMP)

# The native hooks: instruction accounting and the call gate (sim/cpu), hvt's
# network hypercalls (sim/libos)
# (Python fallbacks when absent).
native: $(STAMP)
	$(BIN)/python -m sim.cpu.native --build
	$(BIN)/python -m sim.libos.hvtgate --build

demo: setup
	$(BIN)/sim boot hello --trace -- hello from the demo

test: setup
	$(BIN)/pytest tests
	$(BIN)/pytest --nbmake labs

lab: setup
	$(BIN)/jupyter lab labs

bench: setup
	$(BIN)/python bench/run_all.py

# Rebuild the bundled example images from source (needs gcc).
examples: setup
	$(BIN)/python -m sim.examples --rebuild

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
