# Hand-outs: the student release, the Gradescope autograder and the companion notebooks.
# Included by the main Makefile (`include mk/handout.mk`); uses its $(PY) and `venv`.
#
#   make release                      dist/student/ and dist/student.zip (verifies itself)
#   make autograder                   dist/autograder.zip, to upload on Gradescope
#   make notebooks [LANG=en|ja]       notebooks/build/<lang>/NN_<part>.ipynb (default: both languages)
#   make notebooks-run [LANG=en|ja]   ...and execute them against solutions/ (an instructor's preview)
#   make handouts                     all of the above but the preview
#
# COURSE=path picks another course config (default: course.toml). LANG counts only when given
# on the command line (the environment's LANG is the locale, not a notebook language).

COURSE ?= course.toml
NB_LANG := $(if $(filter command line,$(origin LANG)),$(LANG),)

.PHONY: release autograder notebooks notebooks-run handouts

release: venv
	$(PY) -m grader.release student --config $(COURSE) --out dist/student

autograder: venv
	$(PY) -m grader.release autograder --config $(COURSE) --out dist/autograder.zip

notebooks: venv
	$(PY) -m grader.notebooks $(if $(NB_LANG),--lang $(NB_LANG),) --out notebooks/build

notebooks-run: venv
	$(PY) -m grader.notebooks $(if $(NB_LANG),--lang $(NB_LANG),) --out notebooks/build --execute

handouts: release autograder notebooks
