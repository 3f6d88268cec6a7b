"""The instructor's and maintainer's tools: what builds the hand-outs and keeps the repository in order.

    release.py     the student release (dist/student.zip) and the Gradescope autograder (dist/autograder.zip)
    notebooks.py   the companion notebooks, one per part, in every language
    stubs.py       assignments/ generated from solutions/ (and the stubs in another language)
    catalogues.py  the translation catalogues: extract every student-facing message, check the translations
    bench.py       the translation training's measurements (docs/translation.md)

None of this is shipped. The grader that runs on Gradescope, in ``grade-all`` and in a student's
``make grade`` is the ``grader/`` package alone, and a hand-out copies it whole: these tools
stay out of it because they read ``solutions/`` and ``tests/hidden/``, which must never reach
a student, and are of no use where grading happens. They import the grader; the grader never
imports them (``builders.release.check_no_excluded_imports`` fails a build that would).
"""
