"""``python -m grader grade SUBMISSION --out DIR``: grade one submission.

``grade(options, log)`` runs these stages, one function each, over one ``GradeOptions``:

    take_in                 copy the submission's .py files out of the way (or reject it)
    open_sandbox            the workers' user, the repository hidden from it
    static_scan             banned and suspicious calls in the source, before anything runs
    grade_tested_parts      for each part: pytest.main(the part's public + hidden test files,
                            plugins=[GradingPlugin]); the tests' `impl` is a SandboxedImplementation:
                            a fresh worker process per part
    grade_translation_part  training in the worker, BLEU in the judge
    score                   points shared by the checks, banned parts zeroed, dependency notes
    write_grade             results.json + report.md

The tests are trusted and run *here*, in the judge; only the student's functions run in the
worker. So a part is graded independently of every other: an import error, exception, NaN,
crash or time-out in one part's worker costs that part's checks and nothing else. A part's
points are shared equally by its checks; a part that uses a banned building block scores 0.

Exit status: 0 whenever results.json was written (whatever the score, a rejected submission
included); 1 with a one-line reason when the grader itself could not do its job; 2 for usage
errors.

Translation: ``grader.translation.grading.grade_translation(proxy, part, out_dir)`` gets a
``SandboxedImplementation`` for the part; it runs the training in the worker through
``proxy.call_trusted("grader.translation.job:run", job)``, decodes and scores the returned
weights here and returns check dicts::

    {"name": "translation: BLEU on the test set", "score": 15.0, "max_score": 20.0,
     "status": "passed" | "failed", "output": "BLEU 63.2 (>= 60 for 15 points) ...",
     "visibility": "visible",          # optional
     "report_md": "### Training\\n..."} # optional: markdown for report.md (curve, samples, picture)

Files it writes into ``out_dir`` (the attention picture) stay there.

Language: what the student reads (report.md, the checks' output, the table) is in ``--lang``,
else the ``[course] language`` of course.toml (read with ``grader.course.load_course``), else
English — never the grading machine's locale. It is fixed (``grader.i18n.set_language``) before
any test module is imported, so the tests' own messages follow. On Gradescope there is no
course.toml: the autograder passes ``--lang`` (see docs/gradescope.md). ``extra_data`` and check
names stay in English (``grader/results.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import os
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest

from grader.contract import PRIVATE_PATHS, TRANSLATION_PART, seal_line
from grader.course import load_course
from grader.i18n import N_, SOURCE_LANGUAGE, _, available_languages, set_language
from grader.results import (
    Check,
    GradeResult,
    PartResult,
    Text,
    parts_table,
    progress_line,
    render,
    write_outputs,
)
from grader.rubric import Part, Rubric, load_rubric
from grader.sandbox import intake, static_check
from grader.sandbox.process import (
    GiB,
    Limits,
    SandboxUser,
    WorkerProcess,
    become_subreaper,
    hide_from_worker,
    sandbox_user,
    stop_being_subreaper,
    sweep_orphans,
)

# grader.sandbox.proxy (and with it torch, pytest, hypothesis) is imported where it is used, so
# that `python -m grader grade-all` and `--help` start fast.

# The hypothesis profile the trusted tests start from (tests/conftest.py registers it); the
# grading plugin derandomises it (GradingPlugin.pytest_sessionstart).
TESTS_PROFILE = "ci"
HIDDEN_DIR = "tests/hidden/"
MAX_MESSAGE_CHARS = 4000
# hypothesis's note on the (shrunk) input that fails, and its headline in the student's language
HYPOTHESIS_NOTES = {"Falsifying example": N_("Falsifying example:"), "Failing test case": N_("Failing test case:")}


# --- options -----------------------------------------------------------------------------------


# The limits' defaults (also shown by `grade-all --help`, which passes only what it is given).
DEFAULT_LIMITS = {
    "call_timeout": 60.0,
    "part_timeout": 600.0,
    "train_timeout": 1800.0,
    "total_timeout": 3600.0,
    "memory_gib": 6.0,
}
LIMIT_HELP = {
    "call_timeout": "seconds one call into student code may take",
    "part_timeout": "seconds per tested part",
    "train_timeout": "seconds for the translation part (training and evaluation)",
    "total_timeout": "seconds for the whole grade",
    "memory_gib": "address-space limit of a worker, GiB (the training worker gets at least 8)",
}


def part_names() -> str:
    """The rubric's parts, for ``--parts``' help ("" when the rubric cannot be read)."""
    try:
        return ", ".join(load_rubric().parts)
    except Exception:  # a broken rubric is reported when grading, not by --help
        return ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("submission", type=Path, help="folder holding transformer/ (or one level deeper), or a .zip")
    parser.add_argument("--out", type=Path, required=True, help="where results.json and report.md go")
    names = part_names()
    parser.add_argument(
        "--parts",
        default=None,
        metavar="PART[,PART...]",
        help="comma-separated parts to grade" + (f", of: {names}" if names else "") + " (default: all)",
    )
    parser.add_argument("--no-train", action="store_true", help="leave the translation (training) part out")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="torch threads in the judge and the workers (the tests use tiny tensors: more threads "
        "only spin and compete; the training job chooses its own)",
    )
    parser.add_argument(
        "--part-jobs",
        type=int,
        default=None,
        metavar="N",
        help="parts graded at once, each by a judge process of its own (default: one per CPU this "
        f"grade may use, here {default_part_jobs()}; grade-all chooses it for its grades)",
    )
    for name, default in DEFAULT_LIMITS.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=float,
            default=default,
            help=LIMIT_HELP[name],
            metavar="GIB" if name == "memory_gib" else "SECONDS",
        )
    parser.add_argument(
        "--no-privilege-drop",
        action="store_true",
        help="without bubblewrap: never run the worker as another user (with bubblewrap the worker "
        "always runs in its namespaces, as root under a uid of its own)",
    )
    parser.add_argument(
        "--no-lock-repo",
        action="store_true",
        help="as root, do not make grader/, tests/, solutions/, .git/ unreadable to the worker's user",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines, only the table")
    parser.add_argument(
        "--print-seal",
        action="store_true",
        help="print the authenticity line (the nonce and SHA-256 that seal results.json) on stdout; "
        "Gradescope's run_autograder and grade-all pass it to check the file they read",
    )
    parser.add_argument(
        "--lang",
        choices=available_languages(),
        default=None,
        help="language of what the student reads: report.md, the checks' messages, the table "
        "(default: [course] language in course.toml, else English; the machine's locale "
        "is never used)",
    )


# The translation worker trains a whole model: it gets at least this much memory, and CPU time
# for at least this many threads, whatever --memory-gib and --threads say.
TRAINING_MEMORY_GIB = 8.0
TRAINING_CPU_THREADS = 4


@dataclass(frozen=True)
class GradeOptions:
    """What one grade is asked for: ``grade``'s command line, read once (``from_args``)."""

    submission: Path
    out: Path
    parts: str | None = None  # "masks,attention"; None: every part
    train: bool = True  # False: --no-train
    threads: int = 1
    part_jobs: int = 1  # parts graded at once (grade_in_lanes); the command line's default: one per CPU
    call_timeout: float = DEFAULT_LIMITS["call_timeout"]
    part_timeout: float = DEFAULT_LIMITS["part_timeout"]
    train_timeout: float = DEFAULT_LIMITS["train_timeout"]
    total_timeout: float = DEFAULT_LIMITS["total_timeout"]
    memory_gib: float = DEFAULT_LIMITS["memory_gib"]
    privilege_drop: bool = True
    lock_repo: bool = True
    quiet: bool = False
    print_seal: bool = False
    lang: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> GradeOptions:
        return cls(
            submission=Path(args.submission),
            out=Path(args.out),
            parts=args.parts,
            train=not args.no_train,
            threads=args.threads,
            part_jobs=max(1, args.part_jobs or default_part_jobs(args.threads)),
            **{name: getattr(args, name) for name in DEFAULT_LIMITS},
            privilege_drop=not args.no_privilege_drop,
            lock_repo=not args.no_lock_repo,
            quiet=args.quiet,
            print_seal=args.print_seal,
            lang=args.lang,
        )

    def part_limits(self) -> Limits:
        """The limits of a tested part's worker."""
        return self._limits(self.part_timeout, self.memory_gib)

    def training_limits(self) -> Limits:
        """The limits of the translation part's worker: one call, the whole training."""
        return self._limits(
            self.train_timeout,
            max(self.memory_gib, TRAINING_MEMORY_GIB),
            call_s=self.train_timeout,
            cpu_threads=TRAINING_CPU_THREADS,
        )

    def _limits(self, seconds: float, memory_gib: float, call_s: float | None = None, cpu_threads: int = 1) -> Limits:
        return Limits(
            call_s=call_s or min(self.call_timeout, seconds),
            cpu_s=int(seconds * max(self.threads, cpu_threads) + 60),
            memory_bytes=int(memory_gib * GiB),
            threads=self.threads,
        )


def course_language() -> str | None:
    """The ``[course] language`` of course.toml, or None (no setting; the Gradescope autograder
    gets ``--lang``)."""
    try:
        course = load_course()
    except Exception as error:  # a broken course.toml is the instructor's to fix: a usage error
        raise ValueError(f"course.toml: {error}") from None
    return getattr(course, "language", None) or None


def leaderboard_wanted(rubric: Rubric) -> bool:
    """Gradescope's leaderboard (the translation's BLEU in results.json): ``[gradescope]
    leaderboard`` of the rubric (the autograder's copy carries course.toml's) or of course.toml."""
    if rubric.leaderboard:
        return True
    try:
        return bool(getattr(load_course(), "leaderboard", False))
    except Exception as error:
        raise ValueError(f"course.toml: {error}") from None


def grading_language(lang: str | None = None) -> str:
    """``lang`` (``--lang``), else the course's language, else English; fixed for this process."""
    return set_language(lang or course_language() or SOURCE_LANGUAGE)


def select_parts(rubric: Rubric, parts: str | None, train: bool) -> tuple[list[str], dict[str, str]]:
    """The parts to grade, in rubric order, and the ones left out with the reason."""
    left_out: dict[str, str] = {}
    if parts:
        wanted = [p.strip() for p in parts.split(",") if p.strip()]
        unknown = [p for p in wanted if p not in rubric.parts]
        if unknown:
            raise ValueError(f"unknown parts {unknown} (parts: {', '.join(rubric.parts)})")
    else:
        wanted = list(rubric.parts)
    selected = []
    for name in rubric.parts:
        if name not in wanted:
            continue
        if name == TRANSLATION_PART and not train:
            left_out[name] = Text(N_("--no-train: training was skipped"))
            continue
        selected.append(name)
    return selected, left_out


def test_files(part: Part) -> list[Path]:
    return [ROOT / t for t in part.tests if (ROOT / t).is_file()]


# --- the pytest plugin -------------------------------------------------------------------------


def _humanize(name: str) -> str:
    return name.removeprefix("test_").replace("_", " ").strip()


def check_name(part: str, item) -> str:
    function = getattr(item, "function", None)
    doc = inspect.getdoc(function) if function is not None else None
    original = getattr(item, "originalname", None) or item.name
    what = doc.strip().splitlines()[0].strip().rstrip(".") if doc and doc.strip() else _humanize(original)
    params = item.name[len(original) :] if item.name.startswith(original) else ""
    return f"{part}: {what}{' ' + params if params else ''}"


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def feedback(exc: BaseException) -> str:
    """What the student reads for a failed check: the message, never grader internals."""
    from grader.sandbox.proxy import SandboxError, StudentCodeError, TransportError, WorkerCrashed

    exc = _leaf(exc)
    if isinstance(exc, (StudentCodeError, WorkerCrashed)):
        text = str(exc)
    elif isinstance(exc, SandboxError):
        text = _("the grader could not run this check (not your fault): {reason}", reason=str(exc))
    elif isinstance(exc, TransportError):
        text = _(
            "the grader could not run this check (a problem in the test, not in your code): {reason}", reason=str(exc)
        )
    elif isinstance(exc, AssertionError):
        text = str(exc) or _("a check failed")
    else:
        text = (
            _("the check could not finish: {error}: {message}", error=type(exc).__name__, message=str(exc))
            + "\n  "
            + _("hint: does your code return the documented type and shape?")
        )
    notes = [
        n
        for n in getattr(exc, "__notes__", [])  # hypothesis: the (shrunk) input that fails
        if isinstance(n, str) and n.startswith(tuple(HYPOTHESIS_NOTES))
    ]
    if notes:
        lines = [line for line in notes[0].splitlines() if "impl=" not in line]
        for prefix, headline in HYPOTHESIS_NOTES.items():
            if lines and lines[0].startswith(prefix + ":"):
                lines[0] = _(headline) + lines[0][len(prefix) + 1 :]
        text += "\n" + "\n".join(lines)
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "\n" + _("… (shortened)")


def failure_kind(exc: BaseException, part: str) -> str:
    """``"not_implemented"``: the part's own stub raised NotImplementedError (its last frame is
    in ``transformer/<part>.py``); ``"banned"``: the run-time watch stopped a banned call; else ""."""
    from grader.sandbox.proxy import StudentCodeError

    exc = _leaf(exc)
    if not isinstance(exc, StudentCodeError):
        return ""
    if exc.type_name == "BannedCallError":
        return "banned"
    if exc.type_name == "NotImplementedError" and exc.frames:
        frame = exc.frames[-1]
        if isinstance(frame, (list, tuple)) and frame and Path(str(frame[0])).stem == part:
            return "not_implemented"
    return ""


class GradingPlugin:
    """Puts the sandboxed ``impl`` behind the conftest's fixture and records each check."""

    def __init__(self, part: str, make_impl):
        self.part = part
        self.make_impl = make_impl
        self.impl = None  # the SandboxedImplementation, once a test asked for `impl`
        self.epoch = 0
        self.checks: dict[str, Check] = {}
        self.errors: list[str] = []
        self.skipped = 0

    def pytest_configure(self, config):
        config.transformer_implementation_factory = self._factory

    def _factory(self):
        self.impl = self.make_impl(lambda: self.epoch)
        return self.impl

    def pytest_sessionstart(self, session):
        # Derandomised examples and no example database: a failure found for one student is
        # never replayed for the next, and grading twice gives the same result. No "explain"
        # phase: after a failure it re-runs dozens of variations (10x the time of the whole
        # test on a stub) only to annotate the report; shrinking to a small example stays.
        from hypothesis import Phase, settings

        try:
            parent = settings.get_profile(TESTS_PROFILE)
        except Exception:
            parent = settings.default
        phases = tuple(p for p in parent.phases if p != Phase.explain)
        settings.register_profile("grading", parent=parent, database=None, derandomize=True, phases=phases)
        settings.load_profile("grading")

    def pytest_runtest_setup(self, item):
        self.epoch += 1  # the worker reseeds, as the conftest does in-process

    def pytest_collectreport(self, report):
        if report.failed:
            self.errors.append(f"could not collect {report.nodeid}: {str(report.longrepr)[-1500:]}")

    @staticmethod
    def _hidden(item) -> bool:
        return Path(str(item.fspath)).resolve().is_relative_to(ROOT / HIDDEN_DIR)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        """Attach what the student will read to the report, while the exception is at hand."""
        outcome = yield
        report = outcome.get_result()
        report.grading_name = check_name(self.part, item)
        report.grading_hidden = self._hidden(item)
        report.grading_feedback = feedback(call.excinfo.value) if call.excinfo is not None else ""
        report.grading_kind = failure_kind(call.excinfo.value, self.part) if call.excinfo is not None else ""

    def pytest_runtest_logreport(self, report):
        """One check per test: its call outcome, or a failed setup/teardown."""
        if report.skipped:
            if report.when != "teardown":
                self.skipped += 1
            return
        if report.when != "call" and report.passed:
            return
        existing = self.checks.get(report.nodeid)
        if existing is not None:  # a teardown error after the call
            if report.failed and existing.passed:
                existing.passed, existing.output = False, getattr(report, "grading_feedback", "")
            return
        self.checks[report.nodeid] = Check(
            part=self.part,
            name=getattr(report, "grading_name", report.nodeid),
            passed=report.passed,
            output="" if report.passed else getattr(report, "grading_feedback", "") or _("the check failed"),
            hidden=getattr(report, "grading_hidden", False),
            kind="" if report.passed else getattr(report, "grading_kind", ""),
        )


# --- running one part --------------------------------------------------------------------------


def pytest_args(files: list[Path]) -> list[str]:
    return [
        *map(str, files),
        "-c",
        str(ROOT / "pyproject.toml"),
        "--rootdir",
        str(ROOT),
        "-o",
        "addopts=",
        "--disable-plugin-autoload",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "-p",
        "no:xdist",
        "-q",
        "--tb=no",
        "--no-header",
        "-W",
        "ignore::DeprecationWarning",
    ]


def run_tested_part(
    part: Part,
    files: list[Path],
    package_dir: Path,
    limits: Limits,
    user: SandboxUser,
    deadline: float,
    worker: WorkerProcess | None,
    log,
) -> tuple[PartResult, list[dict]]:
    """Run the part's tests in this process against a fresh sandboxed worker."""
    from grader.sandbox.proxy import SandboxedImplementation

    started = time.monotonic()
    result = PartResult(part.name, part.title, part.points)
    plugin = GradingPlugin(
        part.name,
        lambda epoch: SandboxedImplementation(
            package_dir, part.name, limits, user, deadline=deadline, epoch=epoch, worker=worker
        ),
    )
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            exit_code = pytest.main(pytest_args(files), plugins=[plugin])
    finally:
        if plugin.impl is not None:
            plugin.impl.close()
        elif worker is not None:
            worker.cleanup()
    violations = plugin.impl.violations if plugin.impl else []
    result.requests = plugin.impl.requests if plugin.impl else 0
    result.checks = list(plugin.checks.values())
    result.seconds = time.monotonic() - started
    if plugin.errors or int(exit_code) not in (0, 1) or not result.checks:
        reason = "; ".join(plugin.errors) or f"pytest exit status {int(exit_code)}: {output.getvalue()[-800:]}"
        log(f"grader problem in part {part.name}: {reason}")
        requests, seconds = result.requests, result.seconds
        result = _grader_problem(part, reason)
        result.requests, result.seconds = requests, seconds
    if plugin.impl and plugin.impl.crashes:
        crash = plugin.impl.crashes[0]
        result.message = crash if len(crash) <= 160 else crash[:160]
    return result, violations


def run_translation(
    part: Part,
    package_dir: Path,
    out_dir: Path,
    limits: Limits,
    user: SandboxUser,
    deadline: float,
    show_progress: bool = False,
) -> tuple[PartResult, list[dict]]:
    """The translation part (``grader.translation.grading``); with ``show_progress``, the
    training's steps, loss and time left on stderr while it runs."""
    from grader.sandbox.proxy import SandboxedImplementation, StudentCodeError, WorkerCrashed
    from grader.translation import grading

    started = time.monotonic()
    result = PartResult(part.name, part.title, part.points)

    proxy = SandboxedImplementation(package_dir, part.name, limits, user, deadline=deadline, max_restarts=0)
    try:
        progress = grading.ProgressDisplay(sys.stderr) if show_progress else None
        raw = grading.grade_translation(proxy, part, out_dir, progress=progress)
        result.checks = [_translation_check(part, item) for item in raw]
        result.flags = [flag for item in raw for flag in item.get("flag_texts", ())]
        if not result.checks:
            raise ValueError("grade_translation returned no checks")
    except (StudentCodeError, WorkerCrashed) as error:
        result.checks = [
            Check(
                part.name,
                f"{part.name}: your model trains and translates",
                False,
                feedback(error),
                max_score=part.points,
            )
        ]
    finally:
        proxy.close()
    result.seconds = time.monotonic() - started
    result.requests = proxy.requests
    return result, proxy.violations


def _translation_check(part: Part, item: dict) -> Check:
    name = str(item.get("name", "translation"))
    if not name.startswith(f"{part.name}: "):
        name = f"{part.name}: {name}"
    max_score = max(0.0, float(item.get("max_score", 0.0)))
    score = min(max_score, max(0.0, float(item.get("score", 0.0))))
    passed = item.get("status", "passed" if score >= max_score else "failed") == "passed"
    picture = (item.get("extra_data") or {}).get("attention_png") or item.get("picture") or ""
    bleu = (item.get("extra_data") or {}).get("bleu")
    data = {"bleu": float(bleu)} if isinstance(bleu, (int, float)) and not isinstance(bleu, bool) else {}
    training = (item.get("extra_data") or {}).get("training")  # when and why training stopped (grading.py)
    if isinstance(training, dict):
        data["training"] = training
    return Check(
        part.name,
        name,
        passed,
        str(item.get("output", ""))[:MAX_MESSAGE_CHARS],
        hidden=item.get("visibility") in ("hidden", "after_published", "after_due_date"),
        max_score=max_score,
        score=score,
        report_md=str(item.get("report_md", "")),
        picture=Path(str(picture)).name if picture else "",
        data=data,
    )


# --- scoring -----------------------------------------------------------------------------------


POINT_UNIT = 100  # points are whole cents: results.json and report.md show at most 2 decimals


def share_points(part: PartResult) -> None:
    """Points of a tested part are shared equally by its checks, in whole cents, so that the
    shares add up to the part's points exactly and the checks that pass add up to the part's
    points times the fraction that passes, rounded to the cent (3 of 9 checks of 6 points: 2,
    not 2.01). The ``remainder`` cents that do not divide evenly go one each to as many passing
    checks as that rounding needs, the rest to failing ones."""
    if part.name == TRANSLATION_PART or not part.checks:
        return
    units = round(part.points * POINT_UNIT)
    count = len(part.checks)
    passing = sum(c.passed for c in part.checks)
    each, remainder = divmod(units, count)
    earned = (2 * units * passing + count) // (2 * count)  # round(units * passing / count), halves up
    extra = {True: earned - passing * each, False: remainder - (earned - passing * each)}
    for check in part.checks:
        cents = each + (extra[check.passed] > 0)
        extra[check.passed] -= 1
        check.max_score = cents / POINT_UNIT
        check.score = check.max_score if check.passed else 0.0


BANNED_CHECK = "uses only allowed building blocks"  # the check that tells a part's ban (results.py)


def apply_violations(part: PartResult, descriptions: list[str]) -> None:
    """A part that uses a banned building block scores 0. The ban is told once, in full, on an
    extra check ("uses only allowed building blocks"); every other check says in one line that
    it does not count (a check that passed is marked ``voided``)."""
    if not descriptions:
        return
    part.violations = descriptions
    reason = (
        _("Not counted: this part uses a building block the assignment bans:")
        + "\n  "
        + "\n  ".join(render(d) for d in descriptions)
    )
    for check in part.checks:
        check.voided = check.passed
        check.score = 0.0
        check.passed = False
    part.checks.append(Check(part.name, f"{part.name}: {BANNED_CHECK}", False, reason, kind="banned"))


def dependency_notes(parts: list[PartResult], rubric: Rubric) -> None:
    """A part that lost points while a part it builds on also did: say so first."""
    lost = {p.name for p in parts if p.score < p.max_score - 1e-9}
    for part in parts:
        if part.name not in lost:
            continue
        failing = [d for d in rubric.parts[part.name].depends_on if d in lost]
        if not failing:
            continue
        names = ", ".join(f"`{d}`" for d in failing)
        if len(failing) == 1:
            part.note = Text(
                N_("Note: part {names} also lost points; fix it first — `{part}` builds on it."),
                names=names,
                part=part.name,
            )
        else:
            part.note = Text(
                N_("Note: parts {names} also lost points; fix them first — `{part}` builds on them."),
                names=names,
                part=part.name,
            )
        for check in part.checks:
            if not check.passed:
                check.output = part.note + "\n" + check.output


def attribute_violation(violation: dict, graded_part: str, part_names) -> tuple[set[str], str]:
    """Which parts a run-time violation affects, and its description (a ``Text``)."""
    parts = set()
    for file in [violation["file"], *violation.get("student_files", [])]:
        stem = Path(file).stem
        if stem in part_names:
            parts.add(stem)
            break
    parts.update(p for p in violation.get("extra_parts", []) if p in part_names)
    if not parts:
        parts.add(graded_part)
    fields = dict(
        call=violation["call"], parts=", ".join(sorted(parts)), rule=static_check.rule_text(violation["rule"])
    )
    if violation.get("line"):
        text = Text(
            N_("banned: {call} in {where} (part {parts}, seen at run time) — {rule}"),
            where=f"{violation['file']}:{violation['line']}",
            **fields,
        )
    else:
        text = Text(N_("banned: {call} (part {parts}, seen at run time) — {rule}"), **fields)
    return parts, text


# --- the stages --------------------------------------------------------------------------------


class BannedCalls:
    """The banned calls seen so far and the parts they ban. Each call is flagged once, whether
    the static scan found it before anything ran or a worker's run-time watch reported it."""

    def __init__(self, flags: list):
        self.flags = flags  # results.json's flags, where each call is told
        self.by_part: dict[str, list[str]] = {}  # part -> the descriptions of its banned calls
        self.told: dict[tuple, str] = {}  # (call, file, line) -> its flag

    def of(self, part: str) -> list[str]:
        return self.by_part.get(part, [])

    def found_in_source(self, finding: static_check.Finding) -> None:
        text = finding.describe()
        self.told[(finding.call, finding.file, finding.line)] = text
        for name in finding.parts:
            self.by_part.setdefault(name, []).append(text)

    def seen_at_run_time(self, graded_part: str, violations: list[dict], part_names) -> set[str]:
        """Attribute a part's run-time violations as they come (the live progress line then
        agrees with the table); return the parts they newly ban. A call the static scan already
        flagged at the same file:line is not flagged a second time."""
        newly = set()
        for violation in violations:
            parts, text = attribute_violation(violation, graded_part, part_names)
            key = (violation["call"], violation["file"], violation["line"])
            if key not in self.told:
                self.told[key] = text
                self.flags.append(text)
            for name in parts:
                if not self.of(name):
                    newly.add(name)
                if self.told[key] not in self.of(name):
                    self.by_part.setdefault(name, []).append(self.told[key])
        return newly


@dataclass
class Grading:
    """One grade under way: what its stages share."""

    options: GradeOptions
    rubric: Rubric
    result: GradeResult  # the stages add flags, warnings, the sandbox and what is left out
    deadline: float  # time.monotonic() when the time for the whole grade runs out
    log: Callable[[str], None]
    bans: BannedCalls = field(init=False)
    graded: dict[str, PartResult] = field(default_factory=dict)  # the parts graded so far, by name

    def __post_init__(self):
        self.bans = BannedCalls(self.result.flags)


def grade(options: GradeOptions, log=None) -> tuple[GradeResult, dict]:
    """Grade one submission and write OUT/results.json and OUT/report.md."""
    log = log or (lambda message: None)
    started = time.monotonic()
    grading_language(options.lang)  # before the tests (and their messages) are loaded
    choose_hypothesis_profile()
    rubric = load_rubric()
    selected, left_out = select_parts(rubric, options.parts, options.train)
    options.out.mkdir(parents=True, exist_ok=True)
    result = GradeResult(
        submission=options.submission.name or str(options.submission), nonce=secrets.token_hex(16), left_out=left_out
    )
    grading = Grading(options, rubric, result, deadline=started + options.total_timeout, log=log)

    submission = take_in(grading, selected)
    if submission is None:
        return write_grade(grading, started)
    become_subreaper()  # orphans of the workers' descendants come to us, to be killed
    try:
        user = open_sandbox(grading)
        static_scan(grading, submission.package_dir)
        grade_parts(grading, selected, submission.package_dir, user)
        score(grading)
        if sweep_orphans():  # every worker is gone: nothing the grade started may still run
            log("killed processes that the submission left behind")
        return write_grade(grading, started, leaderboard=leaderboard_wanted(rubric))
    finally:
        sweep_orphans()
        stop_being_subreaper()
        submission.cleanup()


def choose_hypothesis_profile() -> None:
    """The trusted tests run in this process (``pytest.main``), and tests/conftest.py loads the
    hypothesis profile that ``HYPOTHESIS_PROFILE`` names when pytest imports it: no argument
    reaches it, so the judge sets its own environment (the workers get a scrubbed one)."""
    os.environ["HYPOTHESIS_PROFILE"] = TESTS_PROFILE


def take_in(grading: Grading, selected: list[str]) -> intake.Submission | None:
    """Intake: the submission's ``.py`` files, copied out of the way. None when it is rejected:
    then every selected part is "not graded", with the reason."""
    result = grading.result
    try:
        submission = intake.prepare(grading.options.submission)
    except intake.IntakeError as error:
        result.rejected = str(error)
        result.flags.append(Text(N_("rejected: {reason}"), reason=str(error)))
        for name in selected:
            part = grading.rubric.parts[name]
            result.parts.append(
                PartResult(
                    name,
                    part.title,
                    part.points,
                    status="error",
                    message=Text(N_("not graded")),
                    checks=[
                        Check(
                            name,
                            f"{name}: not graded",
                            False,
                            _("not graded: {reason}", reason=str(error)),
                            max_score=part.points,
                        )
                    ],
                )
            )
        return None
    result.warnings += submission.warnings
    return submission


def open_sandbox(grading: Grading) -> SandboxUser:
    """The user the workers run as, the repository hidden from it, and the judge's threads."""
    import torch

    options, result = grading.options, grading.result
    torch.set_num_threads(max(1, options.threads))  # the judge's oracles are small too
    user = sandbox_user(options.privilege_drop)
    if not user.isolated:  # one line, also under --quiet: the instructor must know
        print(
            _(
                "grader: no sandbox isolation ({reason}): the worker can read, write and signal what the "
                "grading user can; see docs/security.md",
                reason=user.isolation.reason if user.isolation else user.reason,
            ),
            file=sys.stderr,
            flush=True,
        )
    if options.lock_repo:
        hide_from_worker(user, [ROOT / p for p in PRIVATE_PATHS])
    result.sandbox = {**user.as_dict(), "python_isolated": True, "limits": options.part_limits().as_dict()}
    return user


def static_scan(grading: Grading, package_dir: Path) -> None:
    """Banned and suspicious calls in the source, flagged before anything runs."""
    findings, notes = static_check.scan_package(package_dir, set(grading.rubric.parts))
    grading.result.warnings += notes
    for finding in findings:
        grading.result.flags.append(finding.describe())
        if finding.severity == "banned":
            grading.bans.found_in_source(finding)


def grade_parts(grading: Grading, names: list[str], package_dir: Path, user: SandboxUser) -> None:
    """Every selected part, each against a worker of its own: one after the other here
    (``--part-jobs 1``), or in judge processes of their own (``grade_in_lanes``). Either way the
    results are recorded in rubric order, the translation part last, so the grade is the same."""
    tested, translation = [], TRANSLATION_PART in names
    for name in names:
        if name == TRANSLATION_PART:
            continue
        files = test_files(grading.rubric.parts[name])
        if files:
            tested.append((name, files))
        else:
            grading.result.left_out[name] = Text(N_("no test files for this part in this installation"))
    if grading.options.part_jobs > 1 and len(tested) + translation > 1:
        grade_in_lanes(grading, dict(tested), translation, package_dir, user)
        return
    # Start each part's worker while the previous part's tests run (torch takes seconds to import).
    workers: dict[str, WorkerProcess] = {}

    def prestart(index: int) -> None:
        if index < len(tested) and time.monotonic() < grading.deadline:
            name = tested[index][0]
            workers[name] = WorkerProcess(package_dir, name, grading.options.part_limits(), user)

    prestart(0)
    for index, (name, files) in enumerate(tested):
        prestart(index + 1)
        record_part(grading, name, grade_tested_part(grading, name, files, package_dir, user, workers.pop(name, None)))
    for worker in workers.values():
        worker.cleanup()
    if translation:
        record_part(grading, TRANSLATION_PART, grade_translation_part(grading, package_dir, user))


def grade_tested_part(
    grading: Grading, name: str, files: list[Path], package_dir: Path, user: SandboxUser, worker: WorkerProcess | None
) -> tuple[PartResult, list[dict]] | None:
    """One tested part; None when the time for the whole grade has run out before it."""
    options, part = grading.options, grading.rubric.parts[name]
    if time.monotonic() >= grading.deadline:
        if worker is not None:
            worker.cleanup()
        return None
    deadline = min(time.monotonic() + options.part_timeout, grading.deadline)
    grading.log(f"grading {name} ...")
    return run_tested_part(part, files, package_dir, options.part_limits(), user, deadline, worker, grading.log)


def grade_translation_part(grading: Grading, package_dir: Path, user: SandboxUser) -> tuple[PartResult, list[dict]]:
    """The translation part: the training in a worker, the BLEU of its weights here."""
    options = grading.options
    deadline = min(time.monotonic() + options.train_timeout, grading.deadline)
    grading.log("grading translation (training) ...")
    return run_translation(
        grading.rubric.parts[TRANSLATION_PART],
        package_dir,
        options.out,
        options.training_limits(),
        user,
        deadline,
        show_progress=not options.quiet,
    )


def record_part(grading: Grading, name: str, outcome: tuple[PartResult, list[dict]] | None) -> None:
    """A part's result into the grade: its points shared among its checks, the banned calls it
    made (which can also cost parts graded before it), a grader problem as a flag, a log line.
    ``outcome`` None: the part was not run, the time for the whole grade ran out."""
    if outcome is None:
        part = grading.rubric.parts[name]
        not_run = Check(name, f"{name}: not run", False, _("not run: the time for the whole grade ran out"))
        grading.graded[name] = PartResult(
            name, part.title, part.points, status="error", message=Text(N_("not run")), checks=[not_run]
        )
        return
    part_result, violations = outcome
    grading.graded[name] = part_result
    if name == TRANSLATION_PART:
        grading.result.flags += part_result.flags
    else:
        share_points(part_result)
    newly_banned = grading.bans.seen_at_run_time(name, violations, grading.rubric.parts)
    if part_result.grader_error:
        grading.result.flags.append(
            Text(N_("grader-error: part {part}: {reason}"), part=name, reason=part_result.grader_error[:300])
        )
    if name != TRANSLATION_PART:
        grading.log("  " + progress_line(part_result, banned=bool(grading.bans.of(name))))
    log_newly_banned(grading, newly_banned - {name})


# --- parts at once -----------------------------------------------------------------------------
#
# A tested part keeps one core busy (the judge's oracles and the worker take turns), and the
# translation part keeps one core busy training. With ``--part-jobs N`` the grade forks N judge
# processes ("lanes") that take parts off one queue: the translation part first (the longest),
# then the tested parts in rubric order. A lane starts the next part's worker while the current
# part's tests run. Each lane sends back what ``grade_tested_part`` returns; this process records
# the results in rubric order (``record_part``), so results.json is the same as one after the other.
# A lane is forked, not spawned: it inherits the imported modules, the sandbox and the options,
# and nothing but part names and results crosses between the processes.


def default_part_jobs(threads: int = 1) -> int:
    """Parts graded at once: one per CPU this process may use (at the given torch threads each)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, threads))


def grade_in_lanes(
    grading: Grading, tested: dict[str, list[Path]], translation: bool, package_dir: Path, user: SandboxUser
) -> None:
    import multiprocessing
    from multiprocessing.connection import wait

    order = ([TRANSLATION_PART] if translation else []) + list(tested)
    lanes = min(grading.options.part_jobs, len(order))
    context = multiprocessing.get_context("fork")
    tasks = context.SimpleQueue()
    for name in order + [None] * lanes:  # a None ends a lane
        tasks.put(name)
    processes, connections = [], []
    for _index in range(lanes):
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=_lane, args=(grading, tested, package_dir, user, tasks, sender), name="grade-lane", daemon=True
        )
        process.start()
        sender.close()  # the lane holds the only sending end: its exit is the receiver's end of file
        processes.append(process)
        connections.append(receiver)

    outcomes: dict[str, tuple[PartResult, list[dict]] | None] = {}
    recording = list(tested) + ([TRANSLATION_PART] if translation else [])  # the order of a grade in one lane
    recorded = 0
    while connections:
        for connection in wait(connections):
            try:
                name, outcome = connection.recv()
            except (EOFError, OSError):  # the lane is done (or died: its parts are reported below)
                connections.remove(connection)
                continue
            outcomes[name] = outcome
        while recorded < len(recording) and recording[recorded] in outcomes:
            name = recording[recorded]
            record_part(grading, name, outcomes[name])
            recorded += 1
    for process in processes:
        process.join()
    for name in recording[recorded:]:  # never answered: the lane that had it died
        if name not in outcomes:
            problem = f"the judge process grading this part ended with exit status {_lane_status(processes)}"
            outcomes[name] = (_grader_problem(grading.rubric.parts[name], problem), [])
        record_part(grading, name, outcomes[name])


def _lane(grading: Grading, tested: dict, package_dir: Path, user: SandboxUser, tasks, results) -> None:
    """One judge process of ``grade_in_lanes``: grades the parts it takes off ``tasks`` until a None."""
    import torch

    torch.set_num_threads(max(1, grading.options.threads))
    become_subreaper()  # a fork is not the subreaper its parent is: the orphans of its workers come here
    name, worker = tasks.get(), None
    while name is not None:
        following, next_worker = None, None
        try:
            if name == TRANSLATION_PART:  # hours of other parts' work must not wait behind it
                outcome = grade_translation_part(grading, package_dir, user)
                following = tasks.get()
            else:
                following = tasks.get()
                if following in tested and time.monotonic() < grading.deadline:
                    next_worker = WorkerProcess(package_dir, following, grading.options.part_limits(), user)
                outcome = grade_tested_part(grading, name, tested[name], package_dir, user, worker)
        except Exception as error:  # a grader problem: this part says so, the other parts go on
            reason = " ".join(f"{type(error).__name__}: {error}".split())[:400]
            outcome = (_grader_problem(grading.rubric.parts[name], reason), [])
        results.send((name, outcome))
        name, worker = following, next_worker
    sweep_orphans()
    results.close()


def _lane_status(processes) -> str:
    return ", ".join(str(p.exitcode) for p in processes if p.exitcode)


def _grader_problem(part: Part, reason: str) -> PartResult:
    """A part the grader could not grade: not the student's fault, and the instructor is told."""
    return PartResult(
        part.name,
        part.title,
        part.points,
        status="error",
        message=Text(N_("the grader could not run this part's checks")),
        checks=[
            Check(
                part.name,
                f"{part.name}: the checks could not run",
                False,
                _("The grader could not run the checks of this part (not your fault; your instructor has been told)."),
                max_score=part.points,
            )
        ],
        grader_error=reason,
    )


def log_newly_banned(grading: Grading, parts: set[str]) -> None:
    """A part graded earlier, banned by a call seen only now: its progress line again."""
    for earlier in sorted(parts & set(grading.graded)):
        grading.log("  " + progress_line(grading.graded[earlier], banned=True))


def score(grading: Grading) -> None:
    """The parts in rubric order, their points shared by their checks, banned parts zeroed,
    and a note on each part that lost points while a part it builds on did too."""
    rubric, result = grading.rubric, grading.result
    result.parts = [grading.graded[name] for name in rubric.parts if name in grading.graded]
    for part in result.parts:
        share_points(part)
    for part in result.parts:
        apply_violations(part, grading.bans.of(part.name))
    dependency_notes(result.parts, rubric)
    result.left_out = {k: result.left_out[k] for k in rubric.parts if k in result.left_out}


def write_grade(grading: Grading, started: float, leaderboard: bool = False) -> tuple[GradeResult, dict]:
    """Outputs: results.json and report.md in ``--out``."""
    grading.result.execution_time = time.monotonic() - started
    return grading.result, write_outputs(grading.result, grading.options.out, leaderboard=leaderboard)


# --- the command -------------------------------------------------------------------------------


def log_line(message: str) -> None:
    """One progress line on stderr in a single write: the judge processes of ``grade_in_lanes``
    share the stream, and ``print`` writes the newline apart, so lines of two lanes could merge."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def main(args: argparse.Namespace) -> int:
    options = GradeOptions.from_args(args)
    log = (lambda m: None) if options.quiet else log_line
    if not options.submission.exists():
        print(f"grader: no such submission: {options.submission}", file=sys.stderr)
        return 2
    try:
        result, results = grade(options, log)
    except ValueError as error:  # bad --parts and the like
        print(f"grader: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # the grader could not do its job
        reason = " ".join(f"{type(error).__name__}: {error}".split())
        print(f"grader: could not grade {options.submission}: {reason[:400]}", file=sys.stderr)
        return 1
    print(parts_table(result))
    if result.flags:
        print(_("Flags:") + "\n  " + "\n  ".join(render(f) for f in result.flags))
    print(f"results: {options.out / 'results.json'}")
    if options.print_seal:  # for run_autograder and grade-all; a student has no use for it
        seal = results["extra_data"]["authenticity"]
        print(seal_line(seal["nonce"], seal["sha256"]))
    return 0
