"""``python -m grader export moodle|canvas DOWNLOAD --out DIR ...``: grade what an LMS handed out, fill what it imports.

Both read the LMS's own "download all submissions" layout, give every student one folder (or
``.zip``) under ``DIR/submissions/``, grade them with ``grade-all`` into ``DIR/grades/`` (same
options: ``--jobs``, ``--parts``, ``--no-train``, ``--lang``, ...; resumable), then write:

moodle (assignment activity)
    DOWNLOAD: the zip (or its unpacked folder) from *View all submissions → Download all
    submissions*: one folder per participant, ``Full Name_<participant id>_assignsubmission_file_``
    (files named ``Full Name_<id>_assignsubmission_file_<file>`` from Moodle before 3.1 work
    too). ``--worksheet``: the *Download grading worksheet* CSV (offline grading worksheet
    feedback type). Writes ``DIR/moodle-grading-worksheet.csv`` — the same file with *Grade* and
    *Feedback comments* filled for every graded participant, matched by *Identifier*
    (``Participant <id>``), everything else as downloaded (upload it with *Upload grading
    worksheet*) — and ``DIR/moodle-feedback-files.zip`` for *Upload multiple feedback files in
    a zip*: ``Full Name_<id>_assignfeedback_file_/report.md`` per graded participant.

canvas
    DOWNLOAD: the zip (or folder) from *Assignment → Download Submissions*: files named
    ``<login>_<user id>_<submission id>_<file name>``, ``<login>_late_<user id>_...`` when late.
    ``--assignment``: the gradebook column, ``Name (assignment id)`` as in Canvas's gradebook
    export (an unknown column makes Canvas create a new assignment). ``--roster``: optional,
    the CSV from *Grades → Export*, for names, SIS ids and sections. Writes
    ``DIR/canvas-gradebook-import.csv`` (Student, ID, SIS User ID, SIS Login ID, Section,
    the assignment) for *Grades → Import*; students are matched by ``ID``.

A student's files: a single ``.zip`` (beside files that are not Python) is graded as the
submission; otherwise all of them, as a folder. Points carry at most two decimals. A student
without a submission, or whose grade failed, keeps an empty grade (the LMS leaves it as it is);
the summary on stdout names them, and the late ones.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import re
import shutil
import stat
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from grader.i18n import _

MOODLE_ENTRY = re.compile(r"^(?P<name>.+?)_(?P<id>\d+)_(?P<plugin>assignsubmission_[a-z]+)_?(?P<rest>.*)$", re.S)
CANVAS_ENTRY = re.compile(r"^(?P<login>[^_]+)_(?:(?P<late>late)_)?(?P<id>\d+)_(?P<sub>\d+)_(?P<file>.+)$", re.S | re.I)
MAX_ENTRIES = 100_000
MAX_BYTES = 8 * 2**30  # declared uncompressed size of a class download
IGNORED = {"__MACOSX", ".DS_Store", "__pycache__"}


@dataclass
class Student:
    key: str  # the name of its folder under DIR/submissions and DIR/grades
    lms_id: str  # Moodle participant id / Canvas user id
    name: str
    files: list[tuple[str, Path]] = field(default_factory=list)  # (relative path, file on disk)
    late: bool = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from grader import grade_all

    kinds = parser.add_subparsers(dest="lms", required=True, metavar="{moodle,canvas}")
    moodle = kinds.add_parser(
        "moodle",
        prog="python -m grader export moodle",
        help="Moodle assignment: grading worksheet and feedback-files zip",
        formatter_class=parser.formatter_class,
        description="Grade Moodle's 'Download all submissions' and fill its grading worksheet; see grader/export.py.",
    )
    grade_all.add_arguments(moodle)
    moodle.add_argument(
        "--worksheet",
        type=Path,
        required=True,
        help="the grading worksheet CSV downloaded from Moodle (Identifier, Grade, Feedback comments)",
    )
    canvas = kinds.add_parser(
        "canvas",
        prog="python -m grader export canvas",
        help="Canvas: a gradebook-import CSV",
        formatter_class=parser.formatter_class,
        description="Grade Canvas's 'Download Submissions' zip and write a CSV for Grades > "
        "Import; see grader/export.py.",
    )
    grade_all.add_arguments(canvas)
    canvas.add_argument(
        "--assignment",
        required=True,
        help="the gradebook column, e.g. 'Transformer (1234)': name and assignment id as in Canvas's gradebook export",
    )
    canvas.add_argument(
        "--roster",
        type=Path,
        default=None,
        help="Canvas's gradebook export CSV (names, SIS ids, sections); default: the names in the file names",
    )
    for sub in (moodle, canvas):
        for action in sub._actions:  # grade-all's folder argument also takes the LMS's zip here
            if action.dest == "submissions":
                action.help = "the LMS's download: its .zip, or the folder it unpacks to"
            if action.dest == "out":
                action.help = "DIR/submissions, DIR/grades (grade-all's output) and the files to import"


def points(value) -> str:
    """At most two decimals, no trailing zeros: 24.6294 -> '24.63', 80.0 -> '80'."""
    text = f"{round(float(value), 2):.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


# ---------------------------------------------------------------- reading the downloads


def unpack(download: Path, destination: Path) -> Path:
    """The download as a folder: a folder as it is; a zip unpacked (checked first) into ``destination``."""
    if download.is_dir():
        return download
    if not zipfile.is_zipfile(download):
        raise ValueError(_("{path} is neither a folder nor a .zip", path=download))
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    with zipfile.ZipFile(download) as zf:
        entries = zf.infolist()
        if len(entries) > MAX_ENTRIES or sum(e.file_size for e in entries) > MAX_BYTES:
            raise ValueError(_("{path}: too many entries or too large", path=download))
        for entry in entries:
            posix = PurePosixPath(entry.filename.replace("\\", "/"))
            if (
                entry.filename.startswith(("/", "\\"))
                or ".." in posix.parts
                or "\x00" in entry.filename
                or (posix.parts and ":" in posix.parts[0])
                or stat.S_ISLNK(entry.external_attr >> 16)
            ):
                raise ValueError(_("{path}: unsafe entry {entry}", path=download, entry=repr(entry.filename)[:80]))
            if entry.is_dir() or set(posix.parts) & IGNORED:
                continue
            target = destination.joinpath(*posix.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(entry) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return destination


def _files(folder: Path) -> list[tuple[str, Path]]:
    return sorted(
        (p.relative_to(folder).as_posix(), p)
        for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink() and not set(p.relative_to(folder).parts) & IGNORED
    )


def _top(folder: Path, pattern: re.Pattern) -> Path:
    """The folder holding the entries (one wrapping folder around them is fine)."""
    names = [p for p in folder.iterdir() if p.name not in IGNORED]
    if not any(pattern.match(p.name) for p in names) and len(names) == 1 and names[0].is_dir():
        return names[0]
    return folder


def moodle_students(folder: Path) -> dict[str, Student]:
    """Participant id -> Student, from Moodle's download (folders per participant, or the old flat files)."""
    students: dict[str, Student] = {}
    for path in sorted(_top(folder, MOODLE_ENTRY).iterdir()):
        match = MOODLE_ENTRY.match(path.name)
        if not match or path.is_symlink() or match["plugin"] != "assignsubmission_file":
            continue  # online text and other plugins: nothing to grade
        student = students.setdefault(match["id"], Student(f"participant-{match['id']}", match["id"], match["name"]))
        if path.is_dir():
            student.files += _files(path)
        elif match["rest"]:
            student.files.append((match["rest"], path))
    return students


def canvas_students(folder: Path) -> dict[str, Student]:
    """Canvas user id -> Student, from Canvas's download (``login[_late]_userid_submissionid_file``)."""
    students: dict[str, Student] = {}
    for path in sorted(_top(folder, CANVAS_ENTRY).iterdir()):
        match = CANVAS_ENTRY.match(path.name)
        if not match or not path.is_file() or path.is_symlink():
            continue
        student = students.setdefault(match["id"], Student(f"user-{match['id']}", match["id"], match["login"]))
        student.late = student.late or bool(match["late"])
        student.files.append((match["file"], path))
    return students


def stage(students: dict[str, Student], staging: Path) -> None:
    """One submission per student under ``staging``: its single .zip, or a folder of its files."""
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for student in students.values():
        zips = [p for name, p in student.files if name.lower().endswith(".zip")]
        python = [name for name, _path in student.files if name.endswith(".py")]
        if len(zips) == 1 and not python:
            shutil.copyfile(zips[0], staging / f"{student.key}.zip")
            continue
        for name, path in student.files:
            target = staging / student.key / PurePosixPath(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        (staging / student.key).mkdir(exist_ok=True)


# ---------------------------------------------------------------- grading


def grade(students: dict[str, Student], args: argparse.Namespace) -> dict[str, dict | None]:
    """Grade the staged submissions with grade-all; key -> results (None when the grade failed)."""
    from grader import grade_all

    staging = args.out / "submissions"
    stage(students, staging)
    options = copy.copy(args)
    options.submissions, options.out = staging, args.out / "grades"
    status = grade_all.main(options)
    if status not in (0, None):
        raise RuntimeError(f"grade-all failed (exit status {status})")
    return {s.key: grade_all.load_valid_results(options.out / s.key / "results.json") for s in students.values()}


def feedback_comment(results: dict) -> str:
    return _(
        "{score} of {max} points. Each part, what passed and what to fix: report.md in the feedback files.",
        score=points(results["score"]),
        max=points(results["extra_data"].get("max_score", 0)),
    )


# ---------------------------------------------------------------- writing what the LMS imports


def _read_csv(path: Path) -> tuple[list[list[str]], bool]:
    raw = path.read_bytes()
    bom = raw.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline=""))), bom


def _write_csv(path: Path, rows: list[list[str]], bom: bool = False) -> None:
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        csv.writer(f).writerows(rows)
    temporary.replace(path)


def fill_moodle_worksheet(worksheet: Path, target: Path, graded: dict[str, dict]) -> tuple[list, list, list]:
    """Copy the worksheet with Grade and Feedback comments of every graded participant id.

    Returns (participant ids of the worksheet without a grade here, warnings, ids whose Status says late)."""
    rows, bom = _read_csv(worksheet)
    if not rows:
        raise ValueError(_("{path} is empty", path=worksheet))
    header, warnings = rows[0], []
    for column in ("Identifier", "Grade", "Last modified (grade)"):
        if column not in header:
            raise ValueError(
                _(
                    "{path}: no '{column}' column: is this Moodle's grading worksheet (in English)?",
                    path=worksheet,
                    column=column,
                )
            )
    ident, grade_at = header.index("Identifier"), header.index("Grade")
    comment_at = header.index("Feedback comments") if "Feedback comments" in header else None
    if comment_at is None:
        warnings.append(
            _(
                "the worksheet has no 'Feedback comments' column (enable feedback comments in the "
                "assignment's settings): only grades were filled"
            )
        )
    maximum_at = (
        header.index("Maximum grade")
        if "Maximum grade" in header
        else (header.index("Maximum Grade") if "Maximum Grade" in header else None)
    )
    status_at = header.index("Status") if "Status" in header else None
    ungraded, late = [], []
    for row in rows[1:]:
        if len(row) <= ident:
            continue
        participant = re.sub(r"\D", "", row[ident])
        if status_at is not None and len(row) > status_at and re.search(r"\blate\b", row[status_at]):
            late.append(participant)
        results = graded.get(participant)
        if results is None:
            ungraded.append(participant)
            continue
        row += [""] * (len(header) - len(row))
        row[grade_at] = points(results["score"])
        if comment_at is not None:
            row[comment_at] = feedback_comment(results)
        if maximum_at is not None and row[maximum_at].strip():
            try:
                if abs(float(row[maximum_at].replace(",", ".")) - results["extra_data"]["max_score"]) > 1e-6:
                    warnings.append(
                        _(
                            "Moodle's maximum grade is {moodle}, the grades are out of {max} points",
                            moodle=row[maximum_at],
                            max=points(results["extra_data"]["max_score"]),
                        )
                    )
            except (ValueError, KeyError):
                pass
    _write_csv(target, rows, bom)
    return ungraded, sorted(set(warnings)), late


def moodle_feedback_zip(target: Path, students: dict[str, Student], graded: dict[str, dict], grades: Path) -> int:
    """``Full Name_<id>_assignfeedback_file_/report.md`` (and the report's pictures) per graded participant."""
    count = 0
    temporary = target.with_suffix(".tmp")
    with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as zf:
        for participant, student in sorted(students.items()):
            folder = grades / student.key
            if participant not in graded or not (folder / "report.md").is_file():
                continue
            name = f"{student.name}_{participant}_assignfeedback_file_"
            for path in sorted(folder.iterdir()):
                if path.name == "report.md" or path.suffix.lower() in (".png", ".svg"):
                    zf.write(path, f"{name}/{path.name}")
            count += 1
    temporary.replace(target)
    return count


CANVAS_IDENTITY = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")


def canvas_gradebook(
    target: Path, assignment: str, students: dict[str, Student], graded: dict[str, dict], roster: Path | None
) -> list[str]:
    """The gradebook-import CSV; returns the roster's user ids without a grade here."""
    people: dict[str, dict[str, str]] = {}
    if roster is not None:
        rows, _bom = _read_csv(roster)
        header = rows[0] if rows else []
        if "ID" not in header:
            raise ValueError(_("{path}: no 'ID' column: is this Canvas's gradebook export?", path=roster))
        for row in rows[1:]:
            record = dict(zip(header, row))
            if re.fullmatch(r"\d+", record.get("ID", "").strip()):  # skips "Points Possible" and test students' blanks
                people[record["ID"].strip()] = {k: record.get(k, "") for k in CANVAS_IDENTITY}
    for user, student in students.items():
        people.setdefault(
            user, {"Student": student.name, "ID": user, "SIS User ID": "", "SIS Login ID": "", "Section": ""}
        )
    out = [[*CANVAS_IDENTITY, assignment]]
    ungraded = []
    for user, person in people.items():
        results = graded.get(user)
        if results is None:
            ungraded.append(user)
        out.append([*(person[k] for k in CANVAS_IDENTITY), "" if results is None else points(results["score"])])
    _write_csv(target, out)
    return ungraded


# ---------------------------------------------------------------- the command


def _ids(ids: list[str]) -> str:
    return f"{len(ids)} ({', '.join(ids)})" if ids else "0"


def main(args: argparse.Namespace) -> int:
    from grader.grade import grading_language

    try:
        grading_language(args.lang)  # the language of the feedback comments, as of the reports
        args.out.mkdir(parents=True, exist_ok=True)
        if not args.submissions.exists():
            print(_("grader: no such download: {path}", path=args.submissions), file=sys.stderr)
            return 2
        folder = unpack(args.submissions, args.out / "download")
        students = moodle_students(folder) if args.lms == "moodle" else canvas_students(folder)
        if args.lms == "moodle" and not args.worksheet.is_file():
            print(_("grader: no such worksheet: {path}", path=args.worksheet), file=sys.stderr)
            return 2
        if not students:
            print(
                _(
                    "grader: {path} holds no {lms} submissions (see python -m grader export {lms} --help)",
                    path=args.submissions,
                    lms=args.lms,
                ),
                file=sys.stderr,
            )
            return 2
        results = grade(students, args)
        graded = {s.lms_id: results[s.key] for s in students.values() if results.get(s.key) is not None}
        failed = [s.lms_id for s in students.values() if results.get(s.key) is None]
        warnings: list[str] = []
        if args.lms == "moodle":
            sheet = args.out / "moodle-grading-worksheet.csv"
            ungraded, warnings, late = fill_moodle_worksheet(args.worksheet, sheet, graded)
            feedback = args.out / "moodle-feedback-files.zip"
            count = moodle_feedback_zip(feedback, students, graded, args.out / "grades")
            written = [
                _("{path} (Moodle: Upload grading worksheet)", path=sheet),
                _(
                    "{path} ({count} reports; Moodle: Upload multiple feedback files in a zip)",
                    path=feedback,
                    count=count,
                ),
            ]
        else:
            sheet = args.out / "canvas-gradebook-import.csv"
            ungraded = canvas_gradebook(sheet, args.assignment, students, graded, args.roster)
            late = [s.lms_id for s in students.values() if s.late]
            written = [_("{path} (Canvas: Grades > Import)", path=sheet)]
        missing = [i for i in ungraded if i not in failed]
    except (OSError, ValueError, RuntimeError, csv.Error, zipfile.BadZipFile) as error:
        print(_("grader: export failed: {error}", error=f"{type(error).__name__}: {error}")[:500], file=sys.stderr)
        return 1
    flagged = [s.lms_id for s in students.values() if graded.get(s.lms_id, {}).get("extra_data", {}).get("flags")]
    summary = {
        "graded": len(graded),
        "failed to grade": failed,
        "no submission": missing,
        "flagged": flagged,
        "late": late,
    }
    (args.out / "export-summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(
        _(
            "{lms}: {graded} graded; failed to grade: {failed}; no submission: {missing}; flagged: {flagged}; "
            "late: {late}",
            lms=args.lms,
            graded=len(graded),
            failed=_ids(failed),
            missing=_ids(missing),
            flagged=_ids(flagged),
            late=_ids(late),
        )
    )
    for line in warnings:
        print(_("warning: {warning}", warning=line))
    for line in written:
        print(_("wrote {file}", file=line))
    return 0
