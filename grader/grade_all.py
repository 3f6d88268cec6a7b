"""``python -m grader grade-all SUBMISSIONS_DIR --out DIR [--jobs N] [--force]``: a whole class.

Every entry of SUBMISSIONS_DIR — a folder or a ``.zip`` per student, named after the student —
is graded by its own ``python -m grader grade`` subprocess (N at a time, default: one per
core), into ``DIR/<student>/``. Each grade is independent: one submission that crashes,
hangs or floods memory costs only its own row.

Resumable: a student whose ``DIR/<student>/results.json`` exists, validates against the
Gradescope schema and carries a consistent seal is skipped (``--force`` regrades). After a
fresh grade the file must also match the nonce and hash that the judge printed on its stdout
(a pipe only the judge writes), so a results.json planted or edited by anything else is
reported instead of counted.

``DIR/gradebook.csv``: student, total, one column per graded part, flags (in English, whatever the
language of the students' reports: ``--lang``, passed on to each grade, else course.toml's); its
first row, ``(points possible)``, holds the maxima (see ``write_gradebook``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from grader.contract import find_seal
from grader.i18n import available_languages
from grader.translation.progress import format_duration

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = Path(__file__).with_name("schemas") / "gradescope_results.schema.json"
PASSTHROUGH = ("parts", "call_timeout", "part_timeout", "train_timeout", "total_timeout", "memory_gib", "lang")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from grader.grade import DEFAULT_LIMITS, LIMIT_HELP, part_names

    parser.add_argument("submissions", type=Path, help="folder with one sub-folder or .zip per student")
    parser.add_argument("--out", type=Path, required=True, help="DIR/<student>/results.json and DIR/gradebook.csv")
    cores = os.cpu_count() or 1
    parser.add_argument(
        "--jobs",
        type=int,
        default=cores,
        metavar="N",
        help=f"grades running at once (default: one per core, here {cores})",
    )
    parser.add_argument("--force", action="store_true", help="regrade students that already have results")
    names = part_names()
    parser.add_argument(
        "--parts",
        default=None,
        metavar="PART[,PART...]",
        help="comma-separated parts to grade" + (f", of: {names}" if names else "") + " (default: all)",
    )
    parser.add_argument("--no-train", action="store_true", help="leave the translation (training) part out")
    # The limits go to each grade only when given (None: grade's own default, shown here).
    for name, default in DEFAULT_LIMITS.items():
        text = LIMIT_HELP[name] + ", passed on to each grade"
        if name == "total_timeout":  # also bounds the grade's subprocess here (+ 300 s)
            parser.add_argument(
                "--total-timeout",
                type=float,
                default=default,
                metavar="SECONDS",
                help="seconds for one student's grade, passed on to each grade",
            )
        else:
            parser.add_argument(
                "--" + name.replace("_", "-"),
                type=float,
                default=None,
                metavar="GIB" if name == "memory_gib" else "SECONDS",
                help=f"{text} (default: {default:g})",
            )
    parser.add_argument(
        "--no-lock-repo",
        action="store_true",
        help="as root, leave grader/, tests/, solutions/, .git/ readable to the worker's user; passed on to each grade",
    )
    parser.add_argument(
        "--allow-unisolated",
        action="store_true",
        help="grade even where bubblewrap cannot isolate the workers (then concurrent grades can "
        "read each other's submissions; see docs/security.md)",
    )
    parser.add_argument(
        "--lang",
        choices=available_languages(),
        default=None,
        help="language of the students' reports, passed on to each grade (default: [course] "
        "language in course.toml, else English; the machine's locale is never used)",
    )
    from grader import cluster  # (here: grader.cluster imports this module)

    cluster.add_arguments(parser)


def discover(folder: Path) -> list[tuple[str, Path]]:
    """(student, path) for every sub-folder and .zip, in name order; names made unique."""
    entries, used = [], set()
    for path in sorted(folder.iterdir()):
        if path.name.startswith((".", "__MACOSX")) or path.is_symlink():
            continue
        if path.is_dir():
            student = path.name
        elif path.is_file() and path.suffix.lower() == ".zip":
            student = path.stem
        else:
            continue
        student = re.sub(r"[^A-Za-z0-9._@+-]", "_", student) or "student"
        base, n = student, 2
        while student in used:
            student, n = f"{base}-{n}", n + 1
        used.add(student)
        entries.append((student, path))
    return entries


def load_valid_results(path: Path, nonce: str | None = None, sha256: str | None = None) -> dict | None:
    """The results if the file exists, matches the schema and its seal (and the given one)."""
    import jsonschema

    from grader.results import verify

    try:
        results = json.loads(path.read_text(encoding="utf-8"))
        jsonschema.validate(results, json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    except (OSError, ValueError, jsonschema.ValidationError):
        return None
    return results if verify(results, nonce, sha256) else None


def grade_options(args: argparse.Namespace, part_jobs: int = 1) -> list[str]:
    """The options of grade-all that each ``grade`` gets (the limits only when given), and how many
    parts each grade may grade at once: one here, where every core already runs a grade of its own
    (``local_part_jobs``), and on a cluster, whose workers grade one submission per core."""
    options = ["--part-jobs", str(part_jobs)]
    for name in PASSTHROUGH:
        value = getattr(args, name)
        if value is not None:
            options += [f"--{name.replace('_', '-')}", str(value)]
    for flag in ("no_train", "no_lock_repo"):
        if getattr(args, flag):
            options.append("--" + flag.replace("_", "-"))
    return options


@dataclass
class Graded:
    """One grade, as it travels to whoever writes ``OUT/<student>/``: the files the grade wrote
    (results.json, report.md, the attention picture, grade.log), its stdout (which carries the
    seal) or the problem that stopped it, and where and how long it ran."""

    student: str
    files: dict[str, bytes] = field(default_factory=dict)
    stdout: str = ""
    problem: str = ""
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # the grade subprocess and its descendants (exact with one grade per process)
    host: str = ""


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def grade_submission(student: str, path: Path, options: list[str], timeout: float) -> Graded:
    """Grade one submission by a ``python -m grader grade`` subprocess into a scratch folder, and
    return what it wrote. The one grading function of grade-all: the local pool calls it here,
    a Dask worker calls it on its copy of the submission (grader/cluster.py); ``store`` writes
    the result either way, so a class graded on a cluster scores what it scores here."""
    from grader.sandbox.process import die_with_parent

    begun, cpu_before = time.monotonic(), children_cpu_seconds()
    graded = Graded(student, host=socket.gethostname())
    with tempfile.TemporaryDirectory(prefix="grade-all-") as scratch:  # 0700: no worker's business
        out = Path(scratch) / "out"
        command = [
            sys.executable,
            "-m",
            "grader",
            "grade",
            str(Path(path).resolve()),
            "--out",
            str(out),
            "--quiet",
            "--print-seal",
            *options,
        ]
        env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        try:
            done = subprocess.run(
                command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, preexec_fn=die_with_parent
            )
        except subprocess.TimeoutExpired:
            graded.problem = "grader-error: the grade did not finish in time"
        else:
            graded.files = {
                p.relative_to(out).as_posix(): p.read_bytes()
                for p in sorted(out.rglob("*"))
                if p.is_file() and not p.is_symlink()
            }
            graded.files["grade.log"] = f"$ {' '.join(command)}\n{done.stdout}\n{done.stderr}".encode()
            graded.stdout = done.stdout
            if done.returncode != 0:
                reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
                graded.problem = f"grader-error: {reason[:300]}"
    graded.seconds, graded.cpu_seconds = time.monotonic() - begun, children_cpu_seconds() - cpu_before
    return graded


def store(graded: Graded, out: Path) -> str:
    """Write a grade's files into ``out/<student>/`` and check its seal; -> the problem, or "".

    results.json is written last and each file through a temporary name, so that a grade-all
    stopped at any point leaves no half-written results: a rerun regrades what is not there."""
    folder = out / graded.student
    folder.mkdir(parents=True, exist_ok=True)
    for name in sorted(graded.files, key=lambda n: (n == "results.json", n)):
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts:
            return f"grader-error: the grade returned a file outside its folder: {name[:100]}"
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(target.name + ".tmp")
        temporary.write_bytes(graded.files[name])
        temporary.replace(target)
    if graded.problem:
        return graded.problem
    seal = find_seal(graded.stdout)
    if seal is None or load_valid_results(folder / "results.json", *seal) is None:
        return "grader-error: results.json is missing, invalid or does not match this run's seal"
    return ""


def local_part_jobs(jobs: int) -> int:
    """Parts at once in each of ``jobs`` grades on this machine: the cores that no other grade uses."""
    from grader.grade import default_part_jobs

    return max(1, default_part_jobs() // max(1, jobs))


def grade_one(student: str, path: Path, args: argparse.Namespace) -> tuple[str, str]:
    """Grade one submission into ``args.out/<student>/``; return (student, problem or "")."""
    graded = grade_submission(student, path, grade_options(args, local_part_jobs(args.jobs)), args.total_timeout + 300)
    return student, store(graded, args.out)


def _cell(value) -> str:
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text  # no spreadsheet formulas


MAXIMA_ROW = "(points possible)"  # no student is named so: discover() keeps only [A-Za-z0-9._@+-]


def _points(value) -> str:
    """At most two decimals, no trailing zeros: 24.6294 -> 24.63, 80.0 -> 80."""
    text = f"{round(float(value), 2):.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def write_gradebook(path: Path, rows: list[dict], parts: list[str]) -> None:
    """``student, total, <part>..., flags``; the first row under the header, ``(points possible)``,
    holds the maxima. A part no student was graded on (``--parts``, ``--no-train``) has no column;
    one graded for others but not for this student reads ``not graded``. Points: two decimals at most."""
    from grader.rubric import load_rubric

    maxima = {name: part.points for name, part in load_rubric().parts.items()}
    shown = [p for p in parts if any(p in row["parts"] for row in rows)] or list(parts)
    temporary = path.with_suffix(".csv.tmp")
    with open(temporary, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "total", *shown, "flags"])
        writer.writerow(
            [
                MAXIMA_ROW,
                _points(sum(maxima.get(p, 0) for p in shown)),
                *(_points(maxima[p]) if p in maxima else "" for p in shown),
                "",
            ]
        )
        for row in rows:
            graded = row["total"] != ""
            cells = [_points(row["parts"][p]) if p in row["parts"] else ("not graded" if graded else "") for p in shown]
            writer.writerow(
                [_cell(row["student"]), _points(row["total"]) if graded else "", *cells, _cell("; ".join(row["flags"]))]
            )
    temporary.replace(path)


def main(args: argparse.Namespace) -> int:
    from grader.i18n import _
    from grader.rubric import load_rubric
    from grader.sandbox import isolation
    from grader.sandbox.process import hide_from_worker, sandbox_user

    if not args.submissions.is_dir():
        print(f"grader: {args.submissions} is not a folder", file=sys.stderr)
        return 2
    on_cluster = bool(getattr(args, "scheduler", None) or getattr(args, "cluster", None))
    # each grade takes its own uid; on a cluster each worker checks its own sandbox (grader/cluster.py)
    sandbox = isolation.probe(ROOT, worker_uid=False) if not on_cluster else None
    if sandbox is not None and not sandbox.available:
        if not args.allow_unisolated:
            print(
                _(
                    "grader: grade-all refuses to grade without sandbox isolation ({reason}); pass "
                    "--allow-unisolated to grade anyway",
                    reason=sandbox.reason,
                ),
                file=sys.stderr,
            )
            return 2
        print(
            _(
                "grader: no sandbox isolation ({reason}): the worker can read, write and signal what the "
                "grading user can; see docs/security.md",
                reason=sandbox.reason,
            ),
            file=sys.stderr,
            flush=True,
        )
    try:
        rubric = load_rubric()
        args.out.mkdir(parents=True, exist_ok=True)
        students = discover(args.submissions)
        # As root, other students' submissions and results are none of a worker's business
        # (with bubblewrap no worker sees them anyway; the fallback hides them from graderworker).
        if sandbox is not None and not sandbox.available:
            hide_from_worker(sandbox_user(), [args.submissions.resolve(), args.out.resolve()])
        jobs = max(1, args.jobs)
        todo = [(s, p) for s, p in students if args.force or load_valid_results(args.out / s / "results.json") is None]
        if on_cluster:
            print(
                _(
                    "{total} submissions, {done} already graded, grading {todo} on a Dask cluster",
                    total=len(students),
                    done=len(students) - len(todo),
                    todo=len(todo),
                ),
                file=sys.stderr,
                flush=True,
            )
        else:
            print(
                _(
                    "{total} submissions, {done} already graded, grading {todo} ({jobs} at a time)",
                    total=len(students),
                    done=len(students) - len(todo),
                    todo=len(todo),
                    jobs=jobs,
                ),
                file=sys.stderr,
                flush=True,
            )
        started = time.monotonic()
        if on_cluster:
            from grader import cluster

            problems = cluster.grade_many(todo, args, started)
        else:
            problems = grade_many(todo, args, jobs, started)
        rows = []
        for student, _source in students:  # (not `_`: the translation function)
            results = None if student in problems else load_valid_results(args.out / student / "results.json")
            if results is None:
                rows.append(
                    {
                        "student": student,
                        "total": "",
                        "parts": {},
                        "flags": [problems.get(student, "grader-error: no valid results.json")],
                    }
                )
                continue
            extra = results.get("extra_data", {})
            rows.append(
                {
                    "student": student,
                    "total": results["score"],
                    "parts": {name: info["score"] for name, info in extra.get("parts", {}).items()},
                    "flags": list(extra.get("flags", [])),
                }
            )
        write_gradebook(args.out / "gradebook.csv", rows, list(rubric.parts))
    except Exception as error:
        from grader.cluster import ClusterError

        if isinstance(error, ClusterError):  # no cluster to grade on: a usage error, nothing was graded
            print(f"grader: {error}", file=sys.stderr)
            return 2
        print(f"grader: grade-all failed: {type(error).__name__}: {error}"[:500], file=sys.stderr)
        return 1
    failed = sum(1 for row in rows if row["total"] == "")
    flagged = sum(1 for row in rows if row["total"] != "" and row["flags"])
    print(
        summary(len(rows) - failed, len(students) - len(todo), failed, flagged, time.monotonic() - started),
        file=sys.stderr,
        flush=True,
    )
    print(f"gradebook: {args.out / 'gradebook.csv'} ({len(rows)} students, {len(problems)} problems)")
    return 0


# --- progress (grade_many: k/N, time spent, time left; the final summary) ----------------------


def progress_line(k: int, n: int, student: str, problem: str, seconds: float, elapsed: float) -> str:
    """``[3/6] alice: graded in 12.3 s; 0:40 elapsed, about 0:40 left`` (the time left from the
    mean time per finished grade so far)."""
    from grader.i18n import _

    fields = {
        "k": k,
        "n": n,
        "student": student,
        "seconds": f"{seconds:.1f}",
        "elapsed": format_duration(elapsed),
        "left": format_duration(elapsed / max(k, 1) * (n - k)),
    }
    if problem:
        return _(
            "[{k}/{n}] {student}: NOT GRADED after {seconds} s ({problem}); {elapsed} elapsed, about {left} left",
            problem=problem,
            **fields,
        )
    return _("[{k}/{n}] {student}: graded in {seconds} s; {elapsed} elapsed, about {left} left", **fields)


def summary(graded: int, earlier: int, failed: int, flagged: int, elapsed: float) -> str:
    from grader.i18n import _

    return _(
        "done in {elapsed}: {graded} graded ({earlier} of them in an earlier run), {failed} failed to grade, "
        "{flagged} flagged for a human (see the flags column of gradebook.csv)",
        elapsed=format_duration(elapsed),
        graded=graded,
        earlier=earlier,
        failed=failed,
        flagged=flagged,
    )


def grade_many(todo: list[tuple[str, Path]], args: argparse.Namespace, jobs: int, started: float) -> dict[str, str]:
    """Grade ``todo``, ``jobs`` at a time (``grade_one`` each), showing ``k/N``, the time spent
    and the time left: a progress bar on a terminal (tqdm) and one line per finished grade
    (the only output in a log or a pipe). -> the problems, by student."""
    from tqdm import tqdm

    def timed(student: str, path: Path) -> tuple[str, str, float]:
        begun = time.monotonic()
        student, problem = grade_one(student, path, args)
        return student, problem, time.monotonic() - begun

    problems: dict[str, str] = {}
    bar = tqdm(
        total=len(todo),
        unit="grade",
        file=sys.stderr,
        dynamic_ncols=True,
        leave=False,
        disable=not todo or not sys.stderr.isatty(),
        bar_format="{n_fmt}/{total_fmt} |{bar}| {elapsed} elapsed, {remaining} left",
    )
    with bar, concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        order = {pool.submit(timed, student, path): index for index, (student, path) in enumerate(todo)}
        pending = set(order)
        k = 0
        while pending:
            finished, pending = concurrent.futures.wait(
                pending, timeout=1.0, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for future in sorted(finished, key=order.get):  # those done together: in name order
                student, problem, seconds = future.result()
                if problem:
                    problems[student] = problem
                k += 1  # (not bar.n: a disabled bar does not count)
                bar.write(
                    progress_line(k, len(todo), student, problem, seconds, time.monotonic() - started), file=sys.stderr
                )
                bar.update(1)
            bar.refresh()  # the elapsed time ticks on while a long grade runs
    return problems
