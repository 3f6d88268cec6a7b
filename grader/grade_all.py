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

``DIR/gradebook.csv``: student, total, one column per part, flags (in English, whatever the
language of the students' reports: ``--lang``, passed on to each grade, else course.toml's).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from grader.i18n import available_languages

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = Path(__file__).with_name("schemas") / "gradescope_results.schema.json"
SEAL_LINE = re.compile(r"^authenticity: nonce=([0-9a-f]+) sha256=([0-9a-f]+)$", re.M)
PASSTHROUGH = ("parts", "call_timeout", "part_timeout", "train_timeout", "total_timeout", "memory_gib", "lang")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("submissions", type=Path, help="folder with one sub-folder or .zip per student")
    parser.add_argument("--out", type=Path, required=True, help="DIR/<student>/results.json and DIR/gradebook.csv")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="grades running at once")
    parser.add_argument("--force", action="store_true", help="regrade students that already have results")
    parser.add_argument("--parts", default=None, help="comma-separated parts (default: all)")
    parser.add_argument("--no-train", action="store_true", help="leave the translation (training) part out")
    parser.add_argument("--call-timeout", type=float, default=None)
    parser.add_argument("--part-timeout", type=float, default=None)
    parser.add_argument("--train-timeout", type=float, default=None)
    parser.add_argument("--total-timeout", type=float, default=3600.0, help="seconds for one student's grade")
    parser.add_argument("--memory-gib", type=float, default=None)
    parser.add_argument("--no-lock-repo", action="store_true", help="passed on to each grade")
    parser.add_argument("--allow-unisolated", action="store_true",
                        help="grade even where bubblewrap cannot isolate the workers (then concurrent grades can "
                             "read each other's submissions; see docs/security.md)")
    parser.add_argument("--lang", choices=available_languages(), default=None,
                        help="language of the students' reports, passed on to each grade (default: [course] "
                             "language in course.toml, else English; the machine's locale is never used)")


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


def grade_one(student: str, path: Path, args: argparse.Namespace) -> tuple[str, str]:
    """Run one ``grade`` subprocess; return (student, problem or "")."""
    from grader.sandbox.process import die_with_parent

    out = args.out / student
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "grader", "grade", str(path.resolve()), "--out", str(out.resolve()),
               "--quiet"]
    for name in PASSTHROUGH:
        value = getattr(args, name)
        if value is not None:
            command += [f"--{name.replace('_', '-')}", str(value)]
    for flag in ("no_train", "no_lock_repo"):
        if getattr(args, flag):
            command.append("--" + flag.replace("_", "-"))
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    started = time.monotonic()
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=args.total_timeout + 300, preexec_fn=die_with_parent)
    except subprocess.TimeoutExpired:
        return student, "grader-error: the grade did not finish in time"
    (out / "grade.log").write_text(f"$ {' '.join(command)}\n{done.stdout}\n{done.stderr}", encoding="utf-8")
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return student, f"grader-error: {reason[:300]}"
    seal = SEAL_LINE.search(done.stdout)
    if seal is None or load_valid_results(out / "results.json", *seal.groups()) is None:
        return student, "grader-error: results.json is missing, invalid or does not match this run's seal"
    print(f"graded {student} in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    return student, ""


def _cell(value) -> str:
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text  # no spreadsheet formulas


def write_gradebook(path: Path, rows: list[dict], parts: list[str]) -> None:
    temporary = path.with_suffix(".csv.tmp")
    with open(temporary, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "total", *parts, "flags"])
        for row in rows:
            writer.writerow([_cell(row["student"]), row["total"], *(row["parts"].get(p, "") for p in parts),
                             _cell("; ".join(row["flags"]))])
    temporary.replace(path)


def main(args: argparse.Namespace) -> int:
    from grader.i18n import _
    from grader.rubric import load_rubric
    from grader.sandbox import isolation
    from grader.sandbox.process import hide_from_worker, sandbox_user

    if not args.submissions.is_dir():
        print(f"grader: {args.submissions} is not a folder", file=sys.stderr)
        return 2
    sandbox = isolation.probe(ROOT, worker_uid=False)  # each grade takes its own uid
    if not sandbox.available:
        if not args.allow_unisolated:
            print(_("grader: grade-all refuses to grade without sandbox isolation ({reason}); pass "
                    "--allow-unisolated to grade anyway", reason=sandbox.reason), file=sys.stderr)
            return 2
        print(_("grader: no sandbox isolation ({reason}): the worker can read, write and signal what the "
                "grading user can; see docs/security.md", reason=sandbox.reason), file=sys.stderr, flush=True)
    try:
        rubric = load_rubric()
        args.out.mkdir(parents=True, exist_ok=True)
        students = discover(args.submissions)
        # As root, other students' submissions and results are none of a worker's business
        # (with bubblewrap no worker sees them anyway; the fallback hides them from graderworker).
        if not sandbox.available:
            hide_from_worker(sandbox_user(), [args.submissions.resolve(), args.out.resolve()])
        jobs = max(1, args.jobs)
        todo = [(s, p) for s, p in students
                if args.force or load_valid_results(args.out / s / "results.json") is None]
        print(f"{len(students)} submissions, {len(students) - len(todo)} already graded, "
              f"grading {len(todo)} with {jobs} jobs", file=sys.stderr, flush=True)
        problems: dict[str, str] = {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            for student, problem in pool.map(lambda sp: grade_one(sp[0], sp[1], args), todo):
                if problem:
                    problems[student] = problem
                    print(f"{student}: {problem}", file=sys.stderr, flush=True)
        rows = []
        for student, _source in students:  # (not `_`: the translation function)
            results = None if student in problems else load_valid_results(args.out / student / "results.json")
            if results is None:
                rows.append({"student": student, "total": "", "parts": {},
                             "flags": [problems.get(student, "grader-error: no valid results.json")]})
                continue
            extra = results.get("extra_data", {})
            rows.append({
                "student": student,
                "total": results["score"],
                "parts": {name: info["score"] for name, info in extra.get("parts", {}).items()},
                "flags": list(extra.get("flags", [])),
            })
        write_gradebook(args.out / "gradebook.csv", rows, list(rubric.parts))
    except Exception as error:
        print(f"grader: grade-all failed: {type(error).__name__}: {error}"[:500], file=sys.stderr)
        return 1
    print(f"gradebook: {args.out / 'gradebook.csv'} ({len(rows)} students, {len(problems)} problems)")
    return 0
