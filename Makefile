# `make repro` runs the pipeline, `make test` runs the tests; both set up .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# DVC runs each stage's `python -m stages.<name>` with the first python on PATH: make it the
# venv's, whether or not a virtualenv is activated (a system python has no torch). `doctor`
# checks the calling shell's own PATH, where a plain `dvc ...` would find its python.
SHELL_PATH := $(PATH)
export PATH := $(abspath $(BIN)):$(PATH)
export VIRTUAL_ENV := $(abspath $(VENV))
unexport PYTHONHOME
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup repro test bench report doctor clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

repro: $(STAMP)
	$(BIN)/dvc repro

test: $(STAMP)  # one pytest worker per core (pytest-xdist)
	$(BIN)/python -m pytest -q -n auto

bench: $(STAMP)
	$(BIN)/python bench/extract.py
	$(BIN)/python bench/train.py

report: $(STAMP)  # review report.md: make report [BASE=main] [EXP=name]
	$(BIN)/python -m cubecore report --base $(or $(BASE),HEAD) $(if $(EXP),--exp $(EXP))

doctor: $(STAMP)  # one line per check of this machine and workspace, on the calling shell's PATH
	PATH="$(SHELL_PATH)" $(BIN)/python -m cubecore doctor

clean:
	rm -rf $(VENV)
