# The book's commands. A newcomer needs two: `make book` and `make test`; each sets itself up first
# (Debian packages where allowed, the virtual environment from requirements.txt, the offline web assets)
# and a second run installs nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8000
# Notebook kernels and scripts find the virtual environment's tools first.
export PATH := $(abspath $(VENV))/bin:$(PATH)
# make test uses a fresh cache so every training path runs (QUICK mode keeps it short).
TEST_CACHE := $(abspath _build/test-cache)
PYTEST_WORKERS ?= 2

.PHONY: help setup system-packages assets data otter-env book test unit notebooks check-book test-site serve doctor \
	benchmark strip clean assignments grade

help:
	@echo "make book    build the website (executes every chapter, full mode) into _build/html"
	@echo "make serve   serve _build/html on http://127.0.0.1:$(PORT)"
	@echo "make test    unit tests + every notebook in QUICK mode + a no-execute build of the site, checked in Chromium"
	@echo "make doctor  what is installed, which data and models are present"
	@echo "make assignments [CHAPTERS=\"1 4\"]  student notebooks + otter-grader autograders (book/teaching.md)"
	@echo "make grade ASSIGNMENT=_build/assignments/01-... SUBMISSIONS=folder  grade a folder of submissions"

setup: system-packages $(STAMP) assets data otter-env

system-packages:
	@bash scripts/setup_system.sh

$(STAMP): requirements.txt requirements-browser.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-browser.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

assets: $(STAMP)
	@bash scripts/vendor_assets.sh

data: $(STAMP)
	@$(PY) -m mmtutorial prepare-data

# otter-grader in its own environment (.venv-otter, from requirements-otter.txt) on top of .venv.
otter-env: $(STAMP)
	@$(PY) -m mmtutorial otter-env

book: setup
	$(PY) scripts/build_book.py
	@echo "The website is in _build/html. View it with: make serve  (then open http://127.0.0.1:$(PORT))"

serve:
	@test -f _build/html/index.html || { echo "no site yet: run make book first"; exit 1; }
	@echo "Serving _build/html at http://127.0.0.1:$(PORT)  (Ctrl-C stops)"
	$(PY) -m http.server $(PORT) --bind 127.0.0.1 --directory _build/html

# Two pytest workers on two cores: one thread each, because two multi-threaded kernels on two cores hand
# work back and forth and make small models many times slower.
test: setup
	rm -rf $(TEST_CACHE)
	OMP_NUM_THREADS=1 MMTUTORIAL_QUICK=1 MMTUTORIAL_CACHE=$(TEST_CACHE) $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile \
		--nbmake --nbmake-timeout=600 --durations=30 tests book
	$(PY) scripts/build_book.py --no-execute
	$(MAKE) --no-print-directory test-site SITE=_build/check/_build/html

# Every page of a built site in headless Chromium (Debian's): no console error, no request off 127.0.0.1,
# math typeset, diagrams drawn, images loaded, readable at 1280 and 390 px. SITE=_build/html after make book.
# Screenshots go to _build/screenshots/.
SITE ?= _build/html
test-site: $(STAMP)
	MMTUTORIAL_SITE=$(SITE) $(PY) -m pytest -q -p no:cacheprovider tests/test_site_browser.py

# Student notebooks and autograders, from the chapters' exercise cells (book/teaching.md).
CHAPTERS ?=
assignments: setup
	$(PY) -m mmtutorial assignments $(CHAPTERS)

grade: otter-env
	@test -n "$(ASSIGNMENT)" -a -n "$(SUBMISSIONS)" || { echo "usage: make grade ASSIGNMENT=_build/assignments/01-neurons-forward-pass SUBMISSIONS=folder"; exit 2; }
	$(PY) -m mmtutorial grade $(ASSIGNMENT) $(SUBMISSIONS)

unit: $(STAMP) otter-env
	MMTUTORIAL_QUICK=1 $(PY) -m pytest -q tests

notebooks: $(STAMP)
	MMTUTORIAL_QUICK=1 $(PY) -m pytest -q --nbmake --nbmake-timeout=600 book

check-book: $(STAMP)
	$(PY) scripts/build_book.py --no-execute

doctor: $(STAMP)
	$(PY) -m mmtutorial doctor

benchmark: $(STAMP)
	$(PY) benchmarks/time_notebooks.py

strip: $(STAMP)
	$(VENV)/bin/nbstripout $$(git ls-files '*.ipynb')

clean:
	rm -rf _build
