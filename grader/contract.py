"""The facts that more than one place must agree on, kept once.

The student API (module names, the package's folder), the grading parts and their order, the
paths a worker must never read, the seal line that vouches for ``results.json``, and the sizes
of the model the translation part trains. Standard library only: the sandboxed worker gets
this file the way it gets ``sandbox/protocol.py`` (copied beside it), the Gradescope
``run_autograder`` script and the hand-out builders import it too.
"""

from __future__ import annotations

import re
from pathlib import Path

# The package a student hands in, and its modules in the order a student implements them
# (also the order of the rubric, the README table and `make check`).
PACKAGE = "transformer"
MODULES = (
    "masks",
    "attention",
    "feed_forward",
    "normalization",
    "embedding",
    "layers",
    "model",
    "decoding",
    "training",
)
# The part graded by training the whole model; it has no module of its own.
TRANSLATION_PART = "translation"
PARTS = (*MODULES, TRANSLATION_PART)

# Folders of the grader's checkout that hold answers (tests, solutions) or the judge itself;
# as root they are made unreadable to the worker's user, and hostile tests try to read them.
PRIVATE_PATHS = ("grader", "tests", "solutions", ".git")

# The judge prints this line on its stdout (`grade --print-seal`); results.json is trusted
# only if its ``extra_data.authenticity`` matches it (grader.results.verify).
SEAL_LINE = re.compile(r"^authenticity: nonce=([0-9a-f]+) sha256=([0-9a-f]+)$", re.M)


def seal_line(nonce: str, sha256: str) -> str:
    return f"authenticity: nonce={nonce} sha256={sha256}"


def find_seal(text: str) -> tuple[str, str] | None:
    """(nonce, sha256) of the last seal line in a judge's output, or None."""
    found = SEAL_LINE.findall(text)
    return found[-1] if found else None


# The model the translation part trains (`grade`, `make train`, the benchmarks): small enough
# to train in minutes on two CPU cores.
MODEL_SIZES = {"d_model": 128, "num_heads": 4, "num_layers": 2, "d_ff": 512, "dropout": 0.1}


def find_package_root(path: Path) -> Path | None:
    """The folder that holds ``transformer/__init__.py``: ``path`` itself, its parent when
    ``path`` is the package, or the one sub-folder of ``path`` that holds it (a submission
    zipped with an extra folder level). None when there is no such single folder."""
    if (path / PACKAGE / "__init__.py").is_file():
        return path
    if path.name == PACKAGE and (path / "__init__.py").is_file():
        return path.parent
    nested = sorted(p.parent for p in path.glob(f"*/{PACKAGE}/__init__.py"))
    return nested[0].parent if len(nested) == 1 else None
