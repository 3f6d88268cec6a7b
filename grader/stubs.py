"""Generate the student stubs in ``assignments/`` from the reference in ``solutions/``.

``solutions/transformer/*.py`` is the single source of truth. Inside it, every piece of
code a student must write sits between two marker comments::

    # BEGIN SOLUTION: <hint for the student>
    ...reference code...
    # END SOLUTION

A stub keeps everything outside the markers (imports, signatures, docstrings) and replaces
each marked block by the hint and a ``NotImplementedError`` at the same indentation::

    # TODO: <hint for the student>
    raise NotImplementedError("<module>.<function>: <hint for the student>")

Usage:
    python -m grader.stubs            # (re)write assignments/transformer/
    python -m grader.stubs --check    # exit 1 if assignments/ is out of date
"""
from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions" / "transformer"
ASSIGNMENTS = ROOT / "assignments" / "transformer"

BEGIN = re.compile(r"^(?P<indent>\s*)# BEGIN SOLUTION(?::\s*(?P<hint>.*))?$")
END = re.compile(r"^\s*# END SOLUTION\s*$")
GENERATED_NOTICE = (
    "# This file is yours to complete: replace each `raise NotImplementedError` with your code.\n"
    "# (Generated from the reference by `make stubs`; instructors edit solutions/ instead.)\n"
)


class MarkerError(ValueError):
    """A solution file whose BEGIN/END SOLUTION markers do not pair up."""


def _enclosing_names(source: str) -> dict[int, str]:
    """Map each line number to the dotted name of the innermost function around it."""
    names: dict[int, str] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    for line in range(child.lineno, (child.end_lineno or child.lineno) + 1):
                        names[line] = name
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return names


def make_stub(source: str, module: str) -> str:
    """Return the stub version of one solution module's source."""
    names = _enclosing_names(source)
    out: list[str] = []
    block_start = None
    for number, line in enumerate(source.splitlines(), start=1):
        begin = BEGIN.match(line)
        if begin:
            if block_start is not None:
                raise MarkerError(f"{module}:{number}: BEGIN SOLUTION inside another block")
            block_start = number
            indent, hint = begin["indent"], (begin["hint"] or "your code here").strip()
            where = names.get(number, module)
            out.append(f"{indent}# TODO: {hint}")
            message = f"{module}.{where}: {hint}"
            out.append(f"{indent}raise NotImplementedError({message!r})")
        elif END.match(line):
            if block_start is None:
                raise MarkerError(f"{module}:{number}: END SOLUTION without BEGIN")
            block_start = None
        elif block_start is None:
            out.append(line)
    if block_start is not None:
        raise MarkerError(f"{module}:{block_start}: BEGIN SOLUTION is never closed")
    stub = "\n".join(out) + "\n"
    ast.parse(stub)  # a stub must at least be valid Python
    if any(BEGIN.match(line) for line in source.splitlines()):
        stub = GENERATED_NOTICE + stub
    return stub


def expected_stubs(solutions: Path = SOLUTIONS) -> dict[str, str]:
    """File name -> stub text, for every module of the reference package."""
    return {
        path.name: make_stub(path.read_text(encoding="utf-8"), path.stem)
        for path in sorted(solutions.glob("*.py"))
    }


def stale_stubs(solutions: Path = SOLUTIONS, assignments: Path = ASSIGNMENTS) -> list[str]:
    """Names of the stub files that are missing, differ from the generated text, or are extra."""
    expected = expected_stubs(solutions)
    stale = [
        name
        for name, text in expected.items()
        if not (assignments / name).exists() or (assignments / name).read_text(encoding="utf-8") != text
    ]
    stale += sorted(p.name for p in assignments.glob("*.py") if p.name not in expected)
    return stale


def write_stubs(solutions: Path = SOLUTIONS, assignments: Path = ASSIGNMENTS) -> list[str]:
    assignments.mkdir(parents=True, exist_ok=True)
    expected = expected_stubs(solutions)
    for path in assignments.glob("*.py"):
        if path.name not in expected:
            path.unlink()
    for name, text in expected.items():
        (assignments / name).write_text(text, encoding="utf-8")
    return sorted(expected)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that assignments/ is up to date")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_stubs()
        if stale:
            print(f"assignments/ is out of date with solutions/: {', '.join(stale)}. Run `make stubs`.")
            return 1
        print("assignments/ is up to date with solutions/")
        return 0
    written = write_stubs()
    print(f"wrote {len(written)} stub files to {ASSIGNMENTS.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
