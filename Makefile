# Every target sets up its own virtual environment (.venv) on first use: a fresh clone needs
# no manual step. Students: `make check`, `make check PART=attention`, `make train`.
# Instructors: `make demo`, `make grade SUBMISSION=path OUT=dir [TRAIN=0] [PARTS=a,b]`,
# `make grade-all SUBMISSIONS=dir OUT=dir [JOBS=N] [TRAIN=0] [PARTS=a,b]`, `make test`.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTEST_DISABLE_PLUGIN_AUTOLOAD := 1

IMPL ?= assignments
PART ?=
TEST ?=
TIMEOUT ?=
VERBOSE ?=
PDB ?=
SUBMISSION ?= assignments
SUBMISSIONS ?=
OUT ?= out/grade
# make grade / grade-all: TRAIN=0 leaves the translation (training) part out; PARTS=a,b grades
# only those parts (PART=a works too); JOBS=N grades N students at once (default: one per core).
TRAIN ?= 1
PARTS ?= $(PART)
JOBS ?=
GRADE_OPTIONS = $(if $(filter 0 no false,$(TRAIN)),--no-train,) $(if $(PARTS),--parts $(PARTS),)
STEPS ?=
# The self-tests that `make test` (and so CI) runs; `make test-integration` runs them all.
SELFTESTS := tests/selftest/test_stubs.py tests/selftest/test_catalogues.py tests/selftest/test_rubric.py tests/selftest/test_fonts.py tests/selftest/test_oracles_attention_norm.py \
	tests/selftest/test_oracles_embedding_layers.py tests/selftest/test_oracles_decoding_training.py \
	tests/selftest/test_synthetic_data.py tests/selftest/test_protocol.py tests/selftest/test_banned_ops.py \
	tests/selftest/test_cli.py
# Self-tests that grade, train or build hand-outs in subprocesses (minutes, not seconds).
INTEGRATION := tests/selftest/test_sandbox.py tests/selftest/test_grader.py tests/selftest/test_autograder.py \
	tests/selftest/test_release.py tests/selftest/test_notebooks.py tests/selftest/test_translation.py \
	tests/selftest/test_variants.py tests/selftest/test_mutants.py tests/selftest/test_hostile.py \
	tests/selftest/test_feedback.py tests/selftest/test_isolation.py tests/selftest/test_report.py \
	tests/selftest/test_progress.py tests/selftest/test_export.py tests/selftest/test_cluster.py

.PHONY: help venv check test test-deep lint format stubs catalogues grade demo grade-all train translate bench mutants clean

help:
	@echo "Students:     make check [PART=attention]   make train   make translate"
	@echo "Instructors:  make demo   make grade SUBMISSION=path OUT=dir   make grade-all SUBMISSIONS=dir OUT=dir"
	@echo "              (grade, grade-all: TRAIN=0 no training, PARTS=a,b some parts; grade-all: JOBS=N at once)"
	@echo "Hand-outs:    make release   make autograder   make notebooks [LANG=en|ja]"
	@echo "Maintainers:  make test   make test-deep   make lint   make format   make stubs   make catalogues   make bench   make mutants"

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $@

venv: $(VENV)/.installed

## Students ---------------------------------------------------------------------------------

# `make check` (one line per part; PART=attention for one part in detail): mk/check.mk, shipped
# in the student release too.
include mk/check.mk

train: venv
	$(PY) -m grader train --impl solutions --task synthetic --out runs/synthetic $(if $(STEPS),--steps $(STEPS),)

translate: venv
	$(PY) -m grader translate --checkpoint runs/synthetic/checkpoint.pt "this is a pen ."

## Instructors ------------------------------------------------------------------------------

# The instructor's demo: grade the reference solution end to end, training included.
demo: venv
	$(PY) -m grader grade solutions --out out/demo

grade: venv
	$(PY) -m grader grade $(SUBMISSION) --out $(OUT) $(GRADE_OPTIONS)

grade-all: venv
	@$(if $(SUBMISSIONS),,echo "make grade-all: give SUBMISSIONS=folder (one sub-folder or .zip per student)"; exit 2)
	$(PY) -m grader grade-all $(SUBMISSIONS) --out $(OUT) $(GRADE_OPTIONS) $(if $(JOBS),--jobs $(JOBS),)

## Maintainers ------------------------------------------------------------------------------

stubs: venv
	$(PY) -m builders.stubs

# Extract every student-facing message into the translation catalogues (grader/locale/*/LC_MESSAGES),
# then list what still lacks a translation. `make test` fails until there is nothing to list.
catalogues: venv
	$(PY) -m builders.catalogues update
	$(PY) -m builders.catalogues check

# ruff (pinned in requirements.txt, configured in pyproject.toml): lint and format. `make test`
# starts with it; `make format` rewrites the files; `pre-commit install` runs it at every commit.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@! git grep -nE '#\s*noqa(:\s*[A-Z]+[0-9]+(,\s*[A-Z]+[0-9]+)*)?\s*$$' -- '*.py' ':!tests/selftest/hostile' \
	  || { echo "make lint: a # noqa needs its reason on the same line (# noqa: E731 — why)"; exit 1; }

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The repository's own test command (CI runs it): lint clean; stubs up to date; the public suite on the
# reference, timed; hidden tests and self-tests; every public and hidden test must FAIL on the
# stubs (a test that passes on NotImplementedError has no teeth); then the integration
# self-tests (grader, sandbox, hostile submissions, hand-outs, training, mutants, variants).
test: venv lint
	$(PY) -m builders.stubs --check
	@echo "== public tests against solutions/ (budget: 60 s on 2 cores)"
	@start=$$(date +%s%N); $(PY) -m pytest tests/public --impl solutions -q -p no:warnings || exit 1; \
	  echo "public suite against solutions/: $$(( ($$(date +%s%N) - start) / 1000000 )) ms (budget 60000 ms)"
	@echo "== hidden tests and self-tests against solutions/"
	$(PY) -m pytest tests/hidden $(SELFTESTS) --impl solutions -q -p no:warnings
	@echo "== every public and hidden test must fail on the stubs in assignments/"
	$(PY) -m pytest tests/public tests/hidden --impl assignments --expect-stub-failures -q -p no:warnings
	@echo "== integration: sandbox, grader, Gradescope zip, hand-outs, training, variants, mutants, hostile submissions"
	$(PY) -m pytest $(INTEGRATION) --impl solutions -q -p no:warnings --durations=12

# The integration self-tests alone (the last stage of `make test`).
test-integration: venv
	$(PY) -m pytest $(INTEGRATION) --impl solutions -q -p no:warnings --durations=12

test-deep: venv
	HYPOTHESIS_PROFILE=deep $(PY) -m pytest tests/public tests/hidden --impl solutions -q

bench: venv
	$(PY) -m builders.bench --out bench/results.json

# Grade every mutant of tests/selftest/mutants/catalogue.py (components only) and print the
# kill table with the kill rate and the hint rate; then what a student sees of each in
# `make check` (the table row and the part's output), in English and in Japanese.
mutants: venv
	@mkdir -p out
	$(PY) -m tests.selftest.mutants.run --json out/mutants.json
	$(PY) -m tests.selftest.mutants.seen --lang en --json out/mutants-seen-en.json
	$(PY) -m tests.selftest.mutants.seen --lang ja --json out/mutants-seen-ja.json

clean:
	rm -rf out runs dist notebooks/build .pytest_cache

# The hand-out: make release, make autograder, make notebooks [LANG=ja].
include mk/handout.mk
