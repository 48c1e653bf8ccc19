# hwquant developer entry points. `make demo` and `make test` are all a new checkout needs.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-all lint clean distclean

venv: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-install whenever the dependency declarations are newer than the last install.
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -c constraints.txt -e '.[dev]'
	touch $@

demo: venv
	$(BIN)/hwquant demo -o demo_out

# Tests run in parallel (pytest-xdist), a test module per worker so module fixtures (one
# Verilator build per design) are built once; WORKERS=0 runs them in this process.
WORKERS ?= auto
XDIST = $(if $(filter 0,$(WORKERS)),,-n $(WORKERS) --dist loadfile)

test: venv
	$(BIN)/python -m pytest -q $(XDIST)

test-all: venv
	$(BIN)/python -m pytest -q $(XDIST) -m ''

lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache demo_out sim_build .hwquant-cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
