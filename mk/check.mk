# `make check`, the student's command, kept once: included by the repository's Makefile and by
# the student release's (release/student/Makefile; `make release` ships this file as
# mk/check.mk). The including Makefile defines PY, IMPL, PART, TEST, TIMEOUT, VERBOSE, PDB and
# the `venv` target.

# One line per part: tests passed, points, the first problem as a diagnosis, then what to do
# next. `make check PART=attention [TEST=name] [PDB=1] [VERBOSE=1] [TIMEOUT=60]` shows one part.
# LANG=ja (or a Japanese locale) prints it in Japanese. A failing check exits non-zero without
# make's own "*** Error 1" line, which reads as a broken build: the recipe ends make with
# SIGINT instead (exit status 130), the one way make stops without printing that line. Where
# SIGINT is ignored (a background job of a script) it exits with the check's status as usual.
CHECK_LANG := $(if $(filter command line,$(origin LANG)),COURSE_LANGUAGE=$(LANG),)
check: venv
	@$(CHECK_LANG) $(PY) -m tests.support.feedback $(PART) --impl $(IMPL) $(if $(TEST),--test $(TEST),) \
	  $(if $(TIMEOUT),--timeout $(TIMEOUT),) $(if $(VERBOSE),--verbose,) $(if $(PDB),--pdb,) \
	  || { status=$$?; [[ "$$(trap -p INT)" == *"''"* ]] && exit $$status; kill -INT $$PPID; sleep 0.2; exit 0; }
