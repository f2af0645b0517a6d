# Glassbox: two commands from a fresh clone.
#   make book   -> virtual environment + pinned dependencies + the training grid + `jupyter-book build book/` (quick)
#   make test   -> the same environment + the test suite (smoke profile), the browser test included
#   make pdf    -> the whole report as one PDF, _build/pdf/glassbox.pdf (Chromium's print-to-PDF)
#   make student -> the chapters with exercises as student notebooks in _build/student/ (solutions removed)
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
# Set-up in three parts, each redone when its inputs change (a stamp file newer than them means done):
# the Python environment (requirements.txt, pyproject.toml); MathJax, require.js and the widget manager
# from npm (scripts/fetch_web_assets.sh); chromium, pdftotext, pdfimages from Debian
# (scripts/install_system_packages.sh)
STAMP  := $(VENV)/.glassbox-installed
ASSETS := book/_vendor/.glassbox-web-assets
SYSTEM := $(VENV)/.glassbox-system-programs
TORCH_PIN := $(shell grep -E '^torch==' requirements.txt)
export GLASSBOX_PROFILE ?= quick
GRID     ?= 1
BOOK_OUT ?= .

.PHONY: setup book pdf test test-fast test-paper-dry-run bench student clean clean-all

setup: $(STAMP) $(ASSETS) $(SYSTEM)
	@test -f $(ASSETS) || echo "!! set-up is incomplete: the web assets are missing (see above); the book will not render offline"
	@test -f $(SYSTEM) || echo "!! set-up is incomplete: chromium/poppler-utils are missing (see above); the browser test and make pdf need them"

$(STAMP): requirements.txt pyproject.toml
	@echo ">> creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# torch first and on its own: where a CPU wheel is on pip's find-links this takes it,
	@# instead of letting the resolver pull the multi-GB CUDA build from the index.
	$(BIN)/python -m pip install --quiet "$(TORCH_PIN)"
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (glassbox)" >/dev/null
	@touch $@

# the script writes $(ASSETS) only when every file arrived; on failure set-up goes on and says so (above)
$(ASSETS): scripts/fetch_web_assets.sh
	bash scripts/fetch_web_assets.sh book/_vendor || true

# installs with apt-get when missing (root or password-less sudo), touches $(SYSTEM) only when all are present
$(SYSTEM): scripts/install_system_packages.sh $(STAMP)
	bash scripts/install_system_packages.sh $@

# First every chapter's training grid on a local Dask cluster (one single-threaded worker per core; artifacts
# already in the store are skipped), then the chapters execute side by side into the build's execution cache
# (glassbox.report.prebuild, one process per core), then the book renders them from that cache. GRID=0 skips
# both (each chapter then trains what it needs itself, one after another, as `jupyter-book build book/` alone does);
# BOOK_OUT moves the build (default: ./_build).
book: setup
	@test -f $(ASSETS) || { echo "!! cannot build an offline book without the web assets: run make setup"; exit 1; }
	@echo ">> building the book on profile $(GLASSBOX_PROFILE)"
	@if [ "$(GRID)" != 0 ]; then source $(BIN)/activate && python -m glassbox.grid run all --profile $(GLASSBOX_PROFILE) \
	  && python -m glassbox.report.prebuild book/ --path-output $(BOOK_OUT); fi
	source $(BIN)/activate && jupyter-book build book/ --path-output $(BOOK_OUT)
	@echo ">> HTML: $(abspath $(BOOK_OUT))/_build/html/index.html"

# one PDF of the whole report: a single-page build printed by Chromium (scripts/book_pdf.py)
pdf: setup
	source $(BIN)/activate && python scripts/book_pdf.py --out _build/pdf/glassbox.pdf

# everything, the slow tests too: each chapter on smoke, the whole smoke book (no warning allowed), then
# every page of that build in Chromium (tests/test_browser.py) and its PDF (tests/test_pdf.py)
test: setup
	source $(BIN)/activate && ruff check lib tests bench scripts book && python -m pytest -q

# unit tests only (no notebook execution, no book build)
test-fast: $(STAMP)
	source $(BIN)/activate && ruff check lib tests bench scripts book && python -m pytest -q -m "not slow"

# every chapter with exercises as a student notebook (solutions removed, answer checks kept) in _build/student/
student: $(STAMP)
	$(BIN)/python scripts/student_edition.py --out _build/student

# every chapter's paper profile as a grid dry run on the CPU (does the paper protocol fit? minutes per chapter;
# not part of `make test`, whose CI run must stay within 90 minutes)
test-paper-dry-run: $(STAMP)
	source $(BIN)/activate && python -m pytest -q -s --paper-dry-runs -m paper_dry_run tests/test_grid.py

bench: $(STAMP)
	source $(BIN)/activate && python bench/run.py

clean:
	rm -rf _build results

clean-all: clean
	rm -rf $(VENV) artifacts book/_vendor
