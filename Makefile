# Glassbox: two commands from a fresh clone.
#   make book   -> virtual environment + pinned dependencies + `jupyter-book build book/` (quick profile)
#   make test   -> the same environment + the test suite (smoke profile)
#   make student -> the chapters with exercises as student notebooks in _build/student/ (solutions removed)
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.glassbox-installed
TORCH_PIN := $(shell grep -E '^torch==' requirements.txt)
export GLASSBOX_PROFILE ?= quick

.PHONY: setup book test test-fast bench student clean clean-all

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml scripts/fetch_widget_js.sh
	@echo ">> creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# torch first and on its own: where a CPU wheel is on pip's find-links this takes it,
	@# instead of letting the resolver pull the multi-GB CUDA build from the index.
	$(BIN)/python -m pip install --quiet "$(TORCH_PIN)"
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (glassbox)" >/dev/null
	bash scripts/fetch_widget_js.sh book/_static
	@touch $@

book: $(STAMP)
	@echo ">> building the book on profile $(GLASSBOX_PROFILE)"
	source $(BIN)/activate && jupyter-book build book/
	@echo ">> HTML: $(CURDIR)/_build/html/index.html"

test: $(STAMP)
	source $(BIN)/activate && ruff check lib tests bench scripts book && python -m pytest -q

# unit tests only (no notebook execution, no book build)
test-fast: $(STAMP)
	source $(BIN)/activate && ruff check lib tests bench scripts book && python -m pytest -q -m "not slow"

# every chapter with exercises as a student notebook (solutions removed, answer checks kept) in _build/student/
student: $(STAMP)
	$(BIN)/python scripts/student_edition.py --out _build/student

bench: $(STAMP)
	source $(BIN)/activate && python bench/run.py

clean:
	rm -rf _build results

clean-all: clean
	rm -rf $(VENV) artifacts
