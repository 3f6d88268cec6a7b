"""Helpers shared by the public and hidden tests: the implementation under test
(``implementation``), oracles (``oracles``), inputs and hypothesis strategies (``strategies``),
the student's modules built with the tests' weights (``builders``), assertions with
student-readable messages and their tolerances (``checks``), and the helpers that name the bug
behind a failure (``likely_bugs``)."""
