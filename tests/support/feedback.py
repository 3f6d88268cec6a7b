"""What a student sees from `make check`: diagnoses first, in the student's language.

    python -m tests.support.feedback [PART] [--impl DIR] [--test NAME] [--timeout S]
                                     [--verbose] [-- extra pytest options, e.g. --pdb]

Without PART: one line per part (tests passed, points, the first problem as a diagnosis),
the grader's verdicts that hold already (banned calls, which part to fix first), and what to
do next. With PART: that part's tests, the first failing one in full (diagnosis, input,
falsifying example, the traceback through the student's own file, how to rerun exactly it),
the others one line each. ``--verbose`` is plain pytest with its full output.

The same records feed ``--part-results-json`` (the mutant runner measures the diagnoses) and
the table; ``conftest.py`` wires the plugin in. Every test call runs under a time limit
(in-process only: the grader has its own), so an endless loop ends with a message.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import os
import re
import shutil
import signal
import sys
import traceback
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

from grader.i18n import _

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TIMEOUT_S = 60.0
SHOWN_CAPTURE_LINES = 20
MAX_STUDENT_FRAMES = 6


class TimeLimitExceeded(Exception):
    """A test ran past its time limit (raised inside the student's code by a timer)."""


@dataclass
class Diagnosis:
    """One failed test, as the student reads it."""

    kind: str  # check | bug | not_implemented | syntax | import | timeout | error
    text: str  # the diagnosis line
    problem: str = ""  # its core: the bug named, or what is wrong (without what was checked)
    hint: str = ""
    case: str = ""
    details: list[str] = field(default_factory=list)
    where: str = ""  # "transformer/attention.py:42" (the student's frame), when known
    owner: str = ""  # the module whose file the problem is in (syntax and import errors)
    example: str = ""  # hypothesis's falsifying example
    trace: list[str] = field(default_factory=list)  # the traceback through test and student code
    code: list[str] = field(default_factory=list)  # where the functions the test calls are defined


@dataclass
class Record:
    nodeid: str
    name: str
    part: str
    passed: bool
    diagnosis: Diagnosis | None = None
    captured: str = ""

    @property
    def message(self) -> str:
        """The whole failure message (diagnosis, input, details, hint)."""
        from tests.support.checks import failure_lines

        d = self.diagnosis
        return "\n".join(failure_lines(d.text, d.case, d.details, d.hint)) if d else ""


# --- diagnosing one failure ---------------------------------------------------------------------


def leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _student_package(impl_root: Path | None) -> Path | None:
    return (impl_root / "transformer").resolve() if impl_root else None


def _relative(path: str, impl_root: Path | None) -> str:
    p = Path(path).resolve()
    for base in filter(None, [impl_root, ROOT]):
        try:
            return p.relative_to(base).as_posix()
        except ValueError:
            continue
    return str(p)


def _frames(exc: BaseException, impl_root: Path | None) -> tuple[list[str], str]:
    """The traceback entries in test files and the student's package (the harness, torch and
    hypothesis hidden), and the location of the innermost student frame."""
    package = _student_package(impl_root)
    tests = (ROOT / "tests").resolve()
    support = (ROOT / "tests" / "support").resolve()
    lines, where, student = [], "", 0
    for frame in traceback.extract_tb(exc.__traceback__):
        path = Path(frame.filename).resolve()
        in_student = package is not None and path.is_relative_to(package)
        in_test = path.is_relative_to(tests) and not path.is_relative_to(support)
        if not (in_student or in_test):
            continue
        if in_student:
            student += 1
            where = f"{_relative(frame.filename, impl_root)}:{frame.lineno}"
        lines.append(f"  {_relative(frame.filename, impl_root)}:{frame.lineno} in {frame.name}")
        if frame.line:
            lines.append(f"      {frame.line.strip()}")
    if student > MAX_STUDENT_FRAMES:  # deep recursion: keep the start and the end
        lines = lines[: 2 * MAX_STUDENT_FRAMES] + ["  ..."] + lines[-2 * MAX_STUDENT_FRAMES :]
    return lines, where


def _example(exc: BaseException) -> str:
    """Hypothesis's falsifying example (the `impl` argument left out)."""
    for note in getattr(exc, "__notes__", []):
        if isinstance(note, str) and note.startswith(("Falsifying", "Failing test case")):
            call = note.split(": ", 1)[1] if ": " in note.splitlines()[0] else note
            return "\n".join(line for line in call.splitlines() if "impl=" not in line)
    return ""


IMPL_CALL = re.compile(r"\bimpl\.(\w+)\.(\w+)")


def code_under_test(item, impl_root: Path | None) -> list[str]:
    """``transformer/attention.py:8 scaled_dot_product_attention`` for each function or class
    of the student's package that the test calls (in-process only: the grader has no source)."""
    if impl_root is None:
        return []
    try:
        source = inspect.getsource(item.function)
    except (AttributeError, OSError, TypeError):
        return []
    found = []
    for module, name in dict.fromkeys(IMPL_CALL.findall(source)):
        loaded = sys.modules.get(f"transformer.{module}")
        target = getattr(loaded, name, None) if loaded is not None else None
        try:
            file, line = inspect.getsourcefile(target), inspect.getsourcelines(target)[1]
        except (OSError, TypeError):
            continue
        found.append(f"{_relative(file, impl_root)}:{line} {name}")
    return found[:4]


def todo_hint(message: str) -> str:
    """A stub's ``NotImplementedError("module.function: hint")`` with the hint in the current
    language (the stubs' catalogue), whichever language the hand-out was built in."""
    from grader.i18n import language, translations

    where, sep, hint = message.partition(": ")
    if not sep:
        return message
    return f"{where}: {translations(language(), ('stubs',)).gettext(hint)}"


def _source_line(filename: str, lineno: int | None) -> str:
    try:
        return Path(filename).read_text(encoding="utf-8", errors="replace").splitlines()[(lineno or 1) - 1].strip()
    except (OSError, IndexError):
        return ""


def diagnose(exc: BaseException, impl_root: Path | None) -> Diagnosis:
    """Turn an exception raised by a test into what the student reads first."""
    diagnosis = _diagnose(leaf(exc), impl_root)
    diagnosis.problem = diagnosis.problem or diagnosis.text
    return diagnosis


def _diagnose(exc: BaseException, impl_root: Path | None) -> Diagnosis:
    from tests.support.checks import CheckFailure

    trace, where = _frames(exc, impl_root)
    example = _example(exc)
    package = _student_package(impl_root)
    if isinstance(exc, CheckFailure):
        return Diagnosis(
            "bug" if exc.likely_bug else "check",
            exc.diagnosis,
            exc.problem,
            exc.hint,
            exc.case,
            exc.details,
            where,
            example=example,
            trace=trace,
        )
    if isinstance(exc, NotImplementedError):
        return Diagnosis(
            "not_implemented",
            _("not implemented yet — {todo}", todo=todo_hint(str(exc)) or where),
            where=where,
            trace=trace,
        )
    if (
        isinstance(exc, SyntaxError)
        and exc.filename
        and package
        and Path(exc.filename).resolve().is_relative_to(package)
    ):
        file = _relative(exc.filename, impl_root)
        code = (exc.text or _source_line(exc.filename, exc.lineno)).strip()
        return Diagnosis(
            "syntax",
            _(
                "{error} in {file}, line {line}: {code} ({message})",
                error=type(exc).__name__,
                file=file,
                line=exc.lineno,
                code=code,
                message=exc.msg,
            ),
            where=f"{file}:{exc.lineno}",
            owner=Path(exc.filename).stem,
            trace=trace,
        )
    if isinstance(exc, TimeLimitExceeded):
        text = _(
            "stopped after {seconds} s — an endless loop? (the time limit of one test; TIMEOUT=… changes it)",
            seconds=f"{exc.args[0]:g}",
        )
        if where:
            text += " " + _("(it was running {where})", where=where)
        return Diagnosis("timeout", text, where=where, example=example, trace=trace)
    if isinstance(exc, AssertionError):
        first = (str(exc).strip().splitlines() or [_("a check failed")])[0]
        return Diagnosis("check", first, where=where, example=example, trace=trace)
    message = (str(exc).strip().splitlines() or [""])[0][:300]
    if isinstance(exc, ImportError) and where:
        # an import inside the student's package failed (a missing name or module)
        file, line = where.rsplit(":", 1)
        code = _source_line(str(impl_root / file), int(line)) if impl_root else ""
        return Diagnosis(
            "import",
            _(
                "{error} in {file}, line {line}: {code} ({message})",
                error=type(exc).__name__,
                file=file,
                line=line,
                code=code,
                message=message,
            ),
            where=where,
            owner=Path(file).stem,
            trace=trace,
        )
    if where:
        text = _(
            "your code raised {error} at {where}: {message}", error=type(exc).__name__, where=where, message=message
        )
    else:
        text = _("the test could not call your code: {error}: {message}", error=type(exc).__name__, message=message)
    return Diagnosis("error", text, where=where, example=example, trace=trace)


# --- the pytest plugin ---------------------------------------------------------------------------


class FeedbackPlugin:
    """Records every test's outcome with its diagnosis; prints the student's view at the end."""

    def __init__(self, config):
        self.config = config
        self.records: dict[str, list[Record]] = {}
        self.timeout = float(config.getoption("--test-timeout") or 0)
        self.view = config.getoption("--student-view")  # "table", "part" or None

    def impl_root(self) -> Path | None:
        from tests.conftest import resolve_impl_path

        factory = getattr(self.config, "transformer_implementation_factory", None)
        if factory is not None:
            return None
        try:
            return resolve_impl_path(self.config.getoption("--impl"))
        except pytest.UsageError:
            return None

    # the time limit: an interval timer in the test process (the in-process transport only)
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        use_timer = (
            self.timeout > 0
            and hasattr(signal, "setitimer")
            and getattr(item.config, "transformer_implementation_factory", None) is None
        )
        if not use_timer:
            yield
            return
        limit = self.timeout

        def stop(signum, frame):
            raise TimeLimitExceeded(limit)

        previous = signal.signal(signal.SIGALRM, stop)
        # It fires again each second until the test ends: code that catches the first one
        # (or a re-run of the same example) is stopped too.
        signal.setitimer(signal.ITIMER_REAL, limit, 1.0)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if item.config.getoption("--expect-stub-failures") and report.when == "call":
            if report.passed:
                report.outcome = "failed"
                report.longrepr = (
                    f"{item.nodeid} PASSED against the stubs: this test has no teeth "
                    "(it must fail when the code under test raises NotImplementedError)."
                )
            elif report.failed:
                report.outcome = "passed"
                report.longrepr = None
            return
        if not (report.when == "call" or (report.when == "setup" and not report.passed)):
            return
        from tests.conftest import part_of

        part = part_of(item)
        if not part or report.skipped:
            return
        diagnosis = None
        if report.failed and call.excinfo is not None:
            diagnosis = diagnose(call.excinfo.value, self.impl_root())
            diagnosis.code = code_under_test(item, self.impl_root())
        self.records.setdefault(part, []).append(
            Record(
                item.nodeid,
                item.name,
                part,
                report.passed,
                diagnosis,
                report.capstdout + report.capstderr if report.failed else "",
            )
        )

    def pytest_sessionfinish(self, session, exitstatus):
        path = self.config.getoption("--part-results-json")
        if path:
            data = {
                part: [
                    {
                        "test": r.nodeid,
                        "passed": r.passed,
                        "message": r.message,
                        "diagnosis": asdict(r.diagnosis) if r.diagnosis else None,
                    }
                    for r in records
                ]
                for part, records in self.records.items()
            }
            Path(path).write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")

    def pytest_terminal_summary(self, terminalreporter, exitstatus, config):
        if not self.view:
            return
        write = terminalreporter.write_line
        impl = self.impl_root()
        if self.view == "part":
            for line in part_view(self.records, config.getoption("--student-part"), impl):
                write(line)
        lines = table(self.records, impl, width=shutil.get_terminal_size((100, 24)).columns)
        for line in lines:
            write(line)


# --- the table ---------------------------------------------------------------------------------


def display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def pad(text: str, width: int, right: bool = False) -> str:
    """``text`` padded to ``width`` terminal columns (a Japanese character takes two)."""
    space = " " * max(0, width - display_width(text))
    return space + text if right else text + space


def wrap(text: str, width: int) -> list[str]:
    """Wrap at spaces where there are some, anywhere in Japanese; by display width."""
    lines = []
    for paragraph in text.splitlines() or [""]:
        line, line_width = "", 0
        for token in _tokens(paragraph):
            w = display_width(token)
            if line and line_width + w > width:
                lines.append(line.rstrip())
                line, line_width = "", 0
                token = token.lstrip()
                w = display_width(token)
            line += token
            line_width += w
        lines.append(line.rstrip())
    return lines


NO_LINE_START = set("、。，．・：；？！）」』】〉》ーぁぃぅぇぉっゃゅょァィゥェォッャュョ")


def _tokens(text: str):
    """Words with their following space; each wide (CJK) character on its own, but a closing
    mark or small kana stays with the character before it (Japanese line-breaking rules)."""
    word = ""
    for ch in text:
        if unicodedata.east_asian_width(ch) in "WF":
            if ch in NO_LINE_START and word:
                word += ch
                continue
            if word:
                yield word
            word = ch
        else:
            word += ch
            if ch == " ":
                yield word
                word = ""
    if word:
        yield word


@functools.lru_cache(maxsize=1)
def rubric():
    from grader.rubric import load_rubric

    return load_rubric()


@functools.lru_cache(maxsize=4)
def banned_findings(impl_root: Path | None) -> dict[str, list[str]]:
    """The grader's static scan: ``{part: [what it uses, where]}`` for banned building blocks."""
    if impl_root is None:
        return {}
    from grader.sandbox.static_check import scan_package

    findings, _notes = scan_package(impl_root / "transformer", set(rubric().parts))
    banned: dict[str, list[str]] = {}
    for finding in findings:
        if finding.severity == "banned":
            for part in finding.parts:
                banned.setdefault(part, []).append(
                    _("uses {call} at {where}", call=finding.call, where=f"{finding.file}:{finding.line}")
                )
    return banned


def first_failure(records: list[Record]) -> Record | None:
    """The failure to show first: a syntax or import error, else the first failing test."""
    failed = [r for r in records if not r.passed]
    for kind in ("syntax", "import"):
        for record in failed:
            if record.diagnosis and record.diagnosis.kind == kind:
                return record
    return failed[0] if failed else None


def part_problems(records: dict[str, list[Record]], impl_root: Path | None) -> dict[str, list[str]]:
    """Per part, the lines that explain its first problem (the diagnosis first)."""
    spec = rubric()
    banned = banned_findings(impl_root)
    failing = {part for part, recs in records.items() if any(not r.passed for r in recs)}
    problems: dict[str, list[str]] = {}
    for part, recs in records.items():
        lines = []
        if part in banned:
            lines.append(_("will score 0 when graded: {uses} (a banned building block)", uses="; ".join(banned[part])))
        first = first_failure(recs)
        if first is not None and first.diagnosis is not None:
            d = first.diagnosis
            broken = [dep for dep in spec.parts[part].depends_on if dep in failing or dep in banned]
            if d.kind in ("syntax", "import") and d.owner and d.owner != part and d.owner in spec.parts:
                lines.append(_("builds on `{owner}`, whose file does not import (see `{owner}`)", owner=d.owner))
                broken = [dep for dep in broken if dep != d.owner]
            else:
                text = d.text
                if d.kind == "check" and d.hint:
                    text += " — " + _("hint: {hint}", hint=d.hint)
                lines.append(text)
            if broken:
                lines.append(
                    _("first fix what this part builds on: {parts}", parts=", ".join(f"`{d}`" for d in broken))
                )
        if not lines:
            lines.append(_("all checks pass"))
        problems[part] = lines
    return problems


def next_step(records: dict[str, list[Record]], impl_root: Path | None) -> str:
    spec = rubric()
    banned = banned_findings(impl_root)
    failing = [p for p in spec.parts if p in records and (any(not r.passed for r in records[p]) or p in banned)]
    if not failing:
        return _("All public tests pass. Grading adds hidden tests and trains your model on the translation task.")
    # the first failing part, in the course's order, that builds on no other failing part
    ready = [p for p in failing if not set(spec.parts[p].depends_on) & set(failing)] or failing
    part = ready[0]
    waiting = [p for p in failing if part in spec.parts[p].depends_on]
    text = _("Next: fix `{part}` first — make check PART={part}", part=part)
    if waiting:
        text += " " + _("(used by: {parts})", parts=", ".join(f"`{p}`" for p in waiting))
    return text


def table(records: dict[str, list[Record]], impl_root: Path | None, width: int = 100) -> list[str]:
    spec = rubric()
    banned = banned_findings(impl_root)
    problems = part_problems(records, impl_root)
    head = " ".join([pad(_("part"), 14), pad(_("tests"), 9, right=True), pad(_("points"), 13, right=True)]) + "   "
    indent = 14 + 1 + 9 + 1 + 13 + 3
    text_width = max(40, width - indent - 1)
    lines = ["", head + _("first problem")]
    earned_total = possible_total = 0.0
    for name, part in spec.parts.items():
        recs = records.get(name)
        if not recs:
            continue
        passed = sum(r.passed for r in recs)
        points = 0.0 if name in banned else part.points * passed / len(recs)
        earned_total += points
        possible_total += part.points
        text = []
        for problem in problems[name]:
            text += wrap(problem, text_width)
        lines.append(f"{name:<14} {passed:>4}/{len(recs):<4} {points:>6.1f}/{part.points:<6g}   {text[0]}")
        lines += [" " * indent + more for more in text[1:]]
    lines.append(
        f"{'total':<14} {'':>9} {earned_total:>6.1f}/{possible_total:<6g}   "
        + _("(public tests only; the grade also runs hidden tests and training)")
    )  # "total": parsed by tools
    lines += [""] + wrap(next_step(records, impl_root), max(40, width - 1))
    return lines


# --- one part in detail --------------------------------------------------------------------------


def rerun_command(record: Record) -> str:
    test = record.nodeid.split("::", 1)[1] if "::" in record.nodeid else record.nodeid
    return f"make check PART={record.part} TEST={test.split('[')[0]}"


def part_view(records: dict[str, list[Record]], part: str | None, impl_root: Path | None) -> list[str]:
    lines = []
    for name, recs in records.items():
        if part and name != part:
            continue
        failed = [r for r in recs if not r.passed]
        if not failed:
            continue
        first = first_failure(recs)
        d = first.diagnosis
        lines += [
            "",
            "=" * 78,
            _("{part}: {failed} of {total} tests fail. The first one:", part=name, failed=len(failed), total=len(recs)),
            "=" * 78,
            "",
        ]
        lines += [first.nodeid, "", first.message]
        if d.example:
            lines += ["", _("The input that fails (hypothesis):")] + ["  " + x for x in d.example.splitlines()[:25]]
        if d.trace:
            lines += ["", _("Where (the test's call, then your code):")] + d.trace[-24:]
        if d.code:
            lines += ["", _("Your code under test:")] + ["  " + x for x in d.code]
        if first.captured.strip():
            shown = first.captured.strip().splitlines()
            lines += ["", _("What your code printed (last {count} lines):", count=min(len(shown), SHOWN_CAPTURE_LINES))]
            lines += ["  " + x for x in shown[-SHOWN_CAPTURE_LINES:]]
        lines += [
            "",
            _("Rerun exactly this test (same inputs in the same order: the examples are not random):"),
            "  " + rerun_command(first),
            "  " + _("add PDB=1 to stop in the debugger at the failure, VERBOSE=1 for pytest's full output"),
        ]
        others = [r for r in failed if r is not first]
        if others:
            lines += ["", _("The other failing tests of this part (one line each; TEST=name shows one):")]
            for record in others[:30]:
                text = record.diagnosis.text if record.diagnosis else ""
                short = record.nodeid.split("::", 1)[-1]
                lines.append(f"  - {short}")
                lines += ["      " + x for x in wrap(text, 90)[:3]]
            if len(others) > 30:
                lines.append("  " + _("… and {count} more", count=len(others) - 30))
    return lines


# --- the command -----------------------------------------------------------------------------------


def parts_with_tests() -> list[str]:
    spec = rubric()
    return [
        name
        for name, part in spec.parts.items()
        if any(t.startswith("tests/public/") and (ROOT / t).is_file() for t in part.tests)
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="make check", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("part", nargs="?", default="", help="one part (default: all, as a table)")
    parser.add_argument("--impl", default="assignments")
    parser.add_argument("--test", default="", help="only the tests whose name contains this")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per test (0: none)")
    parser.add_argument("--verbose", action="store_true", help="pytest's full output")
    parser.add_argument("--pdb", action="store_true", help="stop in the debugger at the first failure")
    args, extra = parser.parse_known_args(argv)  # anything else goes to pytest
    valid = parts_with_tests()
    if args.part and args.part not in valid:
        print(_("make check: there is no part “{part}”. The parts: {parts}", part=args.part, parts=", ".join(valid)))
        return 2
    files = [f"tests/public/test_{p}.py" for p in ([args.part] if args.part else valid)]
    options = ["--impl", args.impl, "--test-timeout", str(args.timeout), "-p", "no:warnings", "--no-header"]
    if args.test:
        options += ["-k", args.test]
    if args.pdb:
        options += ["--pdb"]
    extra = [a for a in extra if a != "--"]
    if args.verbose:
        options += ["--student-view", "table", "--student-part", args.part]
    elif args.part or args.test:
        options += ["-qq", "--tb=no", "-rN", "--student-view", "part", "--student-part", args.part]
    else:
        options += ["-qq", "--tb=no", "-rN", "--student-view", "table"]
    os.chdir(ROOT)
    return int(pytest.main(files + options + extra))


if __name__ == "__main__":
    sys.exit(main())
