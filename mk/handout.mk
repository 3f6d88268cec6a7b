# Hand-outs: the student release, the Gradescope autograder and the companion notebooks.
# Included by the main Makefile (`include mk/handout.mk`); uses its $(PY) and `venv`.
#
#   make release                      dist/student/ and dist/student.zip (verifies itself)
#   make release LANG=ja              dist/student-ja/ and dist/student-ja.zip: the same with the
#                                     stubs' docstrings and hints in Japanese (both READMEs in either)
#   make autograder                   dist/autograder.zip, to upload on Gradescope
#   make notebooks [LANG=en|ja]       notebooks/build/<lang>/NN_<part>.ipynb (default: both languages)
#   make notebooks-run [LANG=en|ja]   ...and execute them against solutions/ (an instructor's preview)
#   make handouts [LANG=en|ja]        all of the above but the preview
#
# COURSE=path picks another course config (default: course.toml). LANG counts only when given
# on the command line (the environment's LANG is the locale, not a hand-out language).

COURSE ?= course.toml
NB_LANG := $(if $(filter command line,$(origin LANG)),$(LANG),)
# The student release: English unless LANG is given on the command line.
RELEASE_LANG := $(or $(NB_LANG),en)
RELEASE_OUT := dist/student$(if $(filter-out en,$(RELEASE_LANG)),-$(RELEASE_LANG),)

.PHONY: release autograder notebooks notebooks-run handouts

release: venv
	$(PY) -m builders.release student --lang $(RELEASE_LANG) --config $(COURSE) --out $(RELEASE_OUT)

autograder: venv
	$(PY) -m builders.release autograder --config $(COURSE) --out dist/autograder.zip

notebooks: venv
	$(PY) -m builders.notebooks $(if $(NB_LANG),--lang $(NB_LANG),) --out notebooks/build

notebooks-run: venv
	$(PY) -m builders.notebooks $(if $(NB_LANG),--lang $(NB_LANG),) --out notebooks/build --execute

handouts: release autograder notebooks
