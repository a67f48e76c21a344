# Two entry points: `make demo` runs the main job on the embedded default; `make test` runs the test suite.
# Each creates .venv when it is missing. torch is pinned first so pip takes the local CPU wheel.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.diffaudit-installed

.PHONY: demo test test-fast install clean-venv

EXAMPLE := examples/lora_svd

$(STAMP): pyproject.toml $(EXAMPLE)/pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,ray,inspect]'
	$(BIN)/python -m pip install --quiet -e $(EXAMPLE)  # the worked example's plugin; tests/examples runs it
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/audit run --organism kansas_abortion --budget 5

# Default suite (fast), then a real local Ray cluster, then the science checks (real embedded organisms).
test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider
	$(BIN)/python -m pytest -q -p no:cacheprovider -m ray
	$(BIN)/python -m pytest -q -p no:cacheprovider -m science

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

clean-venv:
	rm -rf $(VENV)
