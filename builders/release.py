"""Build the hand-outs: the student release and the Gradescope autograder.

Usage:
    python -m builders.release student    [--lang en|ja] [--config course.toml] [--out dist/student] [--no-verify]
    python -m builders.release autograder [--config course.toml] [--out dist/autograder.zip]

**student** writes ``dist/student/`` and ``dist/student.zip``: the stubs as the student's
``transformer/`` package, the public tests, the grader (``grader/``, whole but for the
grading-only corpus generator; its rubric lists the public test files only), a student Makefile
with the shared ``mk/check.mk``,
READMEs (``README.md`` in English and ``README.ja.md`` in Japanese, whatever the language),
GitHub Actions workflow and the companion notebooks, and the built-in task's public splits
(``grader/data/synthetic_data``: train, valid, length — never the held-out test split, nor
the grammar's translator and generator ``grader/data/synthetic.py``). ``--lang ja`` gives the stubs' docstrings
and hints in Japanese (``builders.stubs``, catalogue ``grader/locale/ja/LC_MESSAGES/stubs.po``;
a missing translation fails the build); the code is the same. It then verifies itself: the
release's own ``make check`` (run with this interpreter, so no virtual environment is
created) must report 0 points on the untouched stubs, for every part that has public tests.

**autograder** writes ``dist/autograder.zip`` following Gradescope's autograder
specification: ``setup.sh`` and ``run_autograder`` at the root of the zip, the grader (whole)
with the public *and* hidden tests, and never ``solutions/``.

Neither carries ``builders/`` (this package): a hand-out copies ``grader/``, and the grader
never imports a builder (checked on every build).

Both read ``course.toml`` (course name, due date, points per part). See docs/release.md and
docs/gradescope.md.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shlex
import shutil
import stat
import string
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from pathlib import Path

import tomli_w

from grader.contract import PARTS
from grader.course import DEFAULT_CONFIG, Course, CourseError, load_course
from grader.i18n import in_language

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "release"
RUBRIC = ROOT / "grader" / "rubric.toml"

# Grading-side only (paths under grader/), left out of the student release: the grammar's
# translator and the generator of the held-out test split (the student release ships the
# generated public splits instead, grader/data/synthetic_data/*.tsv, read by
# grader/data/corpus.py, written at build time); and the validation looks of grading to the
# threshold, whose batched greedy decoder would hand students decoding.greedy_decode (the
# hand-out has no test split, so it never stops early; its judge decodes row by row:
# grader/translation/trusted.py). The autograder copies grader/ whole: these are the grading
# side's own code there, never in a student's hands, and the leak checks leave them alone.
GRADING_ONLY = {"data/synthetic.py", "translation/validation.py"}
# What no shipped module may import: a hand-out copies grader/ and never this package.
NEVER_SHIPPED = {"builders"}
GENERATED_DATA = "data/synthetic_data"  # never copied from a checkout: written fresh (student) or not at all

# The order a student implements the parts in (also the order of the README table).
PART_ORDER = PARTS

IGNORED_NAMES = {"__pycache__", ".pytest_cache", ".hypothesis", ".ipynb_checkpoints", ".DS_Store", ".venv"}
IGNORED_SUFFIXES = {".pyc", ".pyo"}

# The languages of the student release's stubs (``--lang``); English is ``assignments/`` itself.
STUDENT_LANGUAGES = ("en", "ja")
# Every README of the student release: template in release/student/ -> language of its text.
# All of them go into every release, whatever the language of the stubs.
READMES = {"README.md": "en", "README.ja.md": "ja"}

# A fixed timestamp makes the zips reproducible (same inputs, same bytes).
ZIP_DATE = (2020, 1, 1, 0, 0, 0)


class ReleaseError(RuntimeError):
    """The hand-out could not be built, or failed its own verification."""


# -- course configuration -------------------------------------------------------------------


def check_grade_args(args: tuple[str, ...]) -> None:
    """The extra options must be ones ``python -m grader grade`` accepts (typos fail the build)."""
    if not args:
        return
    try:
        from grader import grade
    except ImportError as error:  # the grader is not there yet: nothing to check against
        print(f"warning: cannot check [autograder] grade_args ({error})", file=sys.stderr)
        return
    parser = argparse.ArgumentParser(
        prog="python -m grader grade", add_help=False, exit_on_error=False, allow_abbrev=False
    )
    grade.add_arguments(parser)
    forbidden = {"--out", "--parts", "--no-train"} & {a.split("=")[0] for a in args}
    if forbidden:
        raise ReleaseError(f"[autograder] grade_args: {sorted(forbidden)} are set by run_autograder itself")
    try:
        _, unknown = parser.parse_known_args(["submission", "--out", "results", *args])
    except (argparse.ArgumentError, SystemExit) as error:
        raise ReleaseError(f"[autograder] grade_args {list(args)}: {error}") from None
    if unknown:
        raise ReleaseError(f"[autograder] grade_args: `python -m grader grade` does not know {unknown}")


# -- rubric -----------------------------------------------------------------------------------


def render_rubric(course: Course, *, keep_test=lambda path: True, header: str = "") -> str:
    """The rubric with the course's points and only the test files ``keep_test`` accepts.

    The total becomes the sum of the parts; BLEU thresholds are rescaled with their part's
    points. The result is checked with the grader's own loader.
    """
    from grader.rubric import load_rubric

    with open(RUBRIC, "rb") as f:
        raw = tomllib.load(f)
    parts = raw.get("parts", {})
    unknown = sorted(set(course.points) - set(parts))
    if unknown:
        raise ReleaseError(f"course.toml [rubric.points] names unknown parts {unknown} (parts: {sorted(parts)})")
    for name, spec in parts.items():
        if "tests" in spec:
            spec["tests"] = [t for t in spec["tests"] if keep_test(t)]
        if name in course.points:
            old, new = float(spec["points"]), course.points[name]
            spec["points"] = new
            if spec.get("bleu_thresholds") and old > 0:
                spec["bleu_thresholds"] = [
                    [bleu, round(points * new / old, 4)] for bleu, points in spec["bleu_thresholds"]
                ]
    raw["total"] = sum(float(spec["points"]) for spec in parts.values())
    if course.leaderboard:  # the autograder has no course.toml: its rubric carries the setting
        raw.setdefault("gradescope", {})["leaderboard"] = True
    comments = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    text = (comments + "\n" if comments else "") + tomli_w.dumps(raw)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "rubric.toml").write_text(text, encoding="utf-8")
        load_rubric(Path(tmp) / "rubric.toml")  # raises RubricError if inconsistent
    return text


# -- copying -----------------------------------------------------------------------------------


def _ignored(path: Path) -> bool:
    return any(part in IGNORED_NAMES for part in path.parts) or path.suffix in IGNORED_SUFFIXES


def copy_tree(src: Path, dst: Path, *, skip=lambda rel: False) -> list[Path]:
    """Copy ``src`` into ``dst`` (relative paths for which ``skip`` is true are left out)."""
    copied = []
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if _ignored(rel) or skip(rel) or not path.is_file():
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        copied.append(target)
    return copied


def copy_file(src: Path, dst: Path, *, executable: bool = False) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    mode = 0o755 if executable else 0o644
    dst.chmod(mode)


INSTRUCTORS_ONLY = "# Instructors only:"  # opens a block of requirements.txt that ends at a blank line


def hand_out_requirements() -> str:
    """requirements.txt without its instructors-only blocks (Dask, for grade-all on a cluster):
    neither a student nor Gradescope installs what only the instructor's grade-all uses."""
    kept, skipping = [], False
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines(keepends=True):
        skipping = line.startswith(INSTRUCTORS_ONLY) or (skipping and bool(line.strip()))
        if not skipping:
            kept.append(line)
    return "".join(kept).rstrip("\n") + "\n"


def write_requirements(dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(hand_out_requirements(), encoding="utf-8")
    dst.chmod(0o644)


def write_zip(folder: Path, zip_path: Path, prefix: str = "") -> list[str]:
    """Zip ``folder``'s files (under ``prefix/`` when given); keeps executable bits."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    names = []
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if not path.is_file() or _ignored(rel):
                continue
            name = f"{prefix}/{rel.as_posix()}" if prefix else rel.as_posix()
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            executable = path.stat().st_mode & stat.S_IXUSR
            info.external_attr = ((0o100755 if executable else 0o100644) & 0xFFFF) << 16
            archive.writestr(info, path.read_bytes())
            names.append(name)
    return names


def _clean_build_litter(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.name in IGNORED_NAMES - {".venv"} and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.suffix in IGNORED_SUFFIXES and path.is_file():
            path.unlink()


def _module_imports(path: Path, root: Path) -> set[str]:
    """Dotted names a Python file under ``root`` imports when it is imported: module-level
    statements only (a lazy import inside a function, like ``grader/data/corpus.py``'s of the
    corpus generator, is one its caller guards). Relative imports are resolved."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except SyntaxError:
        return set()
    package = list(path.parent.relative_to(root).parts)
    found = set()

    def visit(nodes) -> None:
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(node, ast.ClassDef):
                visit(node.body)
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                found.add(module)
                found.update(f"{module}.{alias.name}" for alias in node.names)
            else:
                visit(ast.iter_child_nodes(node))

    visit(tree.body)
    return found


def check_no_excluded_imports(folder: Path, left_out: set[str]) -> None:
    """No copied grader module may import a module (dotted name) the hand-out leaves out."""
    for path in sorted((folder / "grader").rglob("*.py")):
        imports = _module_imports(path, folder)
        bad = sorted(i for i in imports if any(i == b or i.startswith(b + ".") for b in left_out))
        if bad:
            raise ReleaseError(
                f"{path.relative_to(folder)} imports {bad}, which this hand-out leaves out "
                f"({', '.join(sorted(left_out))}); move what it needs into grader/"
            )


# -- leak checks -------------------------------------------------------------------------------

MIN_NEEDLE_CHARS = 20  # shorter lines (``return x``, ``)``) say nothing about a solution


def normalise(line: str) -> str:
    return " ".join(line.split())


PUBLIC_BY_DESIGN = ("tests/public", "tests/support", "tests/conftest.py", "grader/runtime")


def _public_text(root: Path = ROOT) -> str:
    """What students get by design: the public tests, their support code, and the grader's
    trusted runtime that public and hidden tests share (``grader/runtime``: its toy models
    have the Transformer's interface, so a few generic lines coincide with the solutions)."""
    files = []
    for name in PUBLIC_BY_DESIGN:
        path = root / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return "\n".join(
        normalise(line) for path in files if path.is_file() for line in path.read_text(encoding="utf-8").splitlines()
    )


def solution_needles(root: Path = ROOT) -> dict[str, str]:
    """{normalised line: where} for every substantial line inside a BEGIN/END SOLUTION block
    (comments, short lines and lines of PUBLIC_BY_DESIGN files left out)."""
    public = _public_text(root)
    needles = {}
    for path in sorted((root / "solutions" / "transformer").glob("*.py")):
        inside = False
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if "# BEGIN SOLUTION" in line:
                inside = True
            elif "# END SOLUTION" in line:
                inside = False
            elif inside:
                text = normalise(line)
                if len(text) >= MIN_NEEDLE_CHARS and not text.startswith("#") and text not in public:
                    needles.setdefault(text, f"solutions/transformer/{path.name}:{number}")
    return needles


# A line that is only a string literal: one piece of a message split over lines. Its text can
# equal a line of a translation catalogue that a public message shares.
MESSAGE_FRAGMENT = re.compile(r"""[rbuf]*(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')[,)]*""")


def hidden_test_needles(root: Path = ROOT) -> dict[str, str]:
    """{normalised line: where} for every substantial line of the hidden tests that the
    PUBLIC_BY_DESIGN files do not contain as well."""
    public = _public_text(root)
    needles = {}
    for path in sorted((root / "tests" / "hidden").rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            text = normalise(line)
            if MESSAGE_FRAGMENT.fullmatch(text):
                continue  # a piece of a message: strip_hidden_messages keeps those out, by msgid
            if len(text) >= MIN_NEEDLE_CHARS and not text.startswith("#") and text not in public:
                needles.setdefault(text, f"{path.relative_to(root).as_posix()}:{number}")
    return needles


def searchable_text(path: Path) -> str:
    """A file's text, whitespace-normalised line by line (a notebook: its cells' sources)."""
    raw = path.read_bytes()
    if path.suffix == ".ipynb":
        try:
            notebook = json.loads(raw)
            text = "\n".join("".join(cell.get("source", "")) for cell in notebook.get("cells", []))
        except (ValueError, AttributeError):
            text = raw.decode("utf-8", "replace")
    elif path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            text = "\n".join(archive.read(name).decode("utf-8", "replace") for name in archive.namelist())
    else:
        text = raw.decode("utf-8", "replace")
    return "\n".join(normalise(line) for line in text.splitlines())


def find_leaks(folder: Path, needles: dict[str, str], skip=lambda rel: False) -> list[str]:
    """``"file: line (from where)"`` for every needle found in a file under ``folder``."""
    leaks = []
    for path in sorted(Path(folder).rglob("*")):
        rel = path.relative_to(folder)
        if not path.is_file() or skip(rel):
            continue
        text = searchable_text(path)
        leaks += [f"{rel.as_posix()}: {needle!r} (from {where})" for needle, where in needles.items() if needle in text]
    return leaks


HIDDEN_TESTS = "tests/hidden/"


def strip_hidden_messages(folder: Path) -> int:
    """Take the hidden tests' messages out of the translation catalogues under ``folder``
    (``grader/locale/<lang>/LC_MESSAGES/*.po``): a message only hidden tests use is dropped,
    and the hidden files' ``#:`` locations are dropped from the others. A student release has
    no hidden test to show them, and their text (hints that quote the specification's code)
    must not reach students. Returns the number of messages dropped."""
    from babel.messages.pofile import read_po, write_po

    dropped = 0
    for path in sorted((folder / "grader" / "locale").glob("*/LC_MESSAGES/*.po")):
        with path.open("rb") as handle:
            catalogue = read_po(handle, locale=path.parent.parent.name, domain=path.stem)
        changed = bool(catalogue.obsolete)
        catalogue.obsolete.clear()
        for message in list(catalogue):
            if not message.id or not message.locations:
                continue
            kept = [loc for loc in message.locations if not loc[0].replace("\\", "/").startswith(HIDDEN_TESTS)]
            if len(kept) == len(message.locations):
                continue
            changed = True
            if kept:
                message.locations = kept
            else:
                del catalogue[message.id]
                dropped += 1
        if changed:
            with path.open("wb") as handle:
                write_po(handle, catalogue, width=100, sort_output=False, include_previous=False, omit_header=False)
    return dropped


def autograder_private(rel: Path) -> bool:
    """Whether a file of the autograder is one the leak checks leave alone: the hidden tests
    and the grading-only modules (``GRADING_ONLY``), private like the autograder itself."""
    return rel.parts[:2] == ("tests", "hidden") or (
        rel.parts[:1] == ("grader",) and "/".join(rel.parts[1:]) in GRADING_ONLY
    )


def check_no_leaks(folder: Path, *, hidden_tests_allowed: bool) -> None:
    """No solution line and no hidden-test line in the hand-out. The autograder holds the
    hidden tests and the grading-only modules: they are not searched there
    (``autograder_private``); a student release must not hold them at all."""
    private = autograder_private if hidden_tests_allowed else (lambda rel: False)
    leaks = find_leaks(folder, solution_needles(), skip=private)
    leaks += find_leaks(folder, hidden_test_needles(), skip=private)
    if (folder / "solutions").exists():
        leaks.append("solutions/ is in the hand-out")
    if not hidden_tests_allowed and (folder / "tests" / "hidden").exists():
        leaks.append("tests/hidden/ is in the hand-out")
    if leaks:
        raise ReleaseError("the hand-out contains what it must not:\n  - " + "\n  - ".join(leaks[:30]))


def write_public_data(folder: Path) -> list[Path]:
    """The built-in task's train/valid/length splits as data files in the hand-out's grader
    (``grader/data/synthetic_data``); the test split stays on the grading side."""
    from grader.data.corpus import write_public_splits
    from grader.data.synthetic import generate_corpus

    return write_public_splits(generate_corpus(seed=0), folder / "grader" / GENERATED_DATA)


def check_no_test_split(folder: Path) -> None:
    """No held-out test sentence (English side) and no grading-only module in the hand-out."""
    from grader.data.synthetic import generate_corpus

    leaks = [
        f"grader/{name} is in the hand-out" for name in sorted(GRADING_ONLY) if (folder / "grader" / name).exists()
    ]
    test = {en for en, _ in generate_corpus(seed=0).test}
    for path in sorted(Path(folder).rglob("*")):
        rel = path.relative_to(folder)
        if not path.is_file() or path.suffix == ".zip":
            continue
        if path.suffix == ".tsv":  # a data file: a test pair as a line of it
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            found = sorted({line.split("\t")[0] for line in lines} & test)
        else:  # code, docs, notebooks: a test sentence quoted
            text = searchable_text(path)
            found = [en for en in sorted(test) if f'"{en}"' in text or f"'{en}'" in text]
        leaks += [f"{rel.as_posix()}: {en!r} (a sentence of the test split)" for en in found]
    if leaks:
        raise ReleaseError("the hand-out contains held-out test data:\n  - " + "\n  - ".join(leaks[:30]))


# -- the student release ----------------------------------------------------------------------


def _points_table(rubric_text: str, lang: str = "en") -> tuple[str, float, str]:
    rubric = tomllib.loads(rubric_text)
    parts = rubric["parts"]
    order = [p for p in PART_ORDER if p in parts] + [p for p in parts if p not in PART_ORDER]
    rows = []
    for number, name in enumerate(order, start=1):
        spec = parts[name]
        where = (
            f"`transformer/{name}.py`"
            if (ROOT / "solutions" / "transformer" / f"{name}.py").is_file()
            else in_language(lang, "(your trained model)")
        )
        points = float(spec["points"])
        title = in_language(lang, spec.get("title", name))  # the rubric's titles are in the catalogue
        rows.append(f"| {number} | `{name}` | {where} | {points:g} | {title} |")
    note = ""
    if "translation" in parts and parts["translation"].get("bleu_thresholds"):
        steps = in_language(lang, ", ").join(
            in_language(lang, "BLEU ≥ {bleu}: {points}", bleu=f"{b:g}", points=f"{p:g}")
            for b, p in parts["translation"]["bleu_thresholds"]
        )
        note = in_language(
            lang,
            " The `translation` part is awarded by the BLEU score your model reaches after the"
            " grader trains it ({steps} points); it needs working `model`, `masks` and `decoding` parts.",
            steps=steps,
        )
    return "\n".join(rows), float(rubric["total"]), note


def readme_template(lang: str = "en") -> Path:
    """The README template of ``lang`` in release/student/."""
    names = [name for name, language in READMES.items() if language == lang]
    if not names:
        raise ReleaseError(f"no README template for language {lang!r} (known: {sorted(set(READMES.values()))})")
    return TEMPLATES / "student" / names[0]


def render_readme(course: Course, rubric_text: str, lang: str = "en") -> str:
    """The student README in ``lang``, filled in from the course config and the rubric."""
    table, total, note = _points_table(rubric_text, lang)
    template = string.Template(readme_template(lang).read_text(encoding="utf-8"))
    return template.substitute(
        course_name=course.name,
        due=course.due,
        submission_site=course.submission_site,
        contact_line=in_language(lang, " Questions: {contact}.", contact=course.contact) if course.contact else "",
        points_table=table,
        total=f"{total:g}",
        translation_note=note,
    )


def student_stubs(lang: str = "en") -> dict[str, str]:
    """``{file name: text}`` of the student's ``transformer/`` package in ``lang``: English is
    ``assignments/transformer/`` (which must be up to date with ``solutions/``); another
    language is generated from ``solutions/`` with the ``stubs`` catalogue of that language."""
    from builders.stubs import TranslationError, expected_stubs, stale_stubs

    if lang not in STUDENT_LANGUAGES:
        raise ReleaseError(f"no student release in {lang!r} (languages: {', '.join(STUDENT_LANGUAGES)})")
    stale = stale_stubs()
    if stale:
        raise ReleaseError(f"assignments/ is out of date with solutions/ ({', '.join(stale)}): run `make stubs`")
    if lang == "en":
        return {
            path.name: path.read_text(encoding="utf-8")
            for path in sorted((ROOT / "assignments" / "transformer").glob("*.py"))
        }
    try:
        return expected_stubs(lang=lang)
    except TranslationError as error:
        raise ReleaseError(f"the {lang} stubs cannot be built: {error}") from None


def _student_test_filter(path: str) -> bool:
    """Public test files that exist (a part whose public file is not written yet has none)."""
    return path.replace("\\", "/").startswith("tests/public/") and (ROOT / path).is_file()


def missing_public_tests() -> list[str]:
    """Public test files the rubric names that do not exist (yet)."""
    with open(RUBRIC, "rb") as f:
        raw = tomllib.load(f)
    return sorted(
        test
        for spec in raw.get("parts", {}).values()
        for test in spec.get("tests", ())
        if test.replace("\\", "/").startswith("tests/public/") and not (ROOT / test).is_file()
    )


def build_student(
    out: Path,
    course: Course,
    *,
    lang: str = "en",
    verify: bool = True,
    make_zip: bool = True,
    python: str = sys.executable,
    log=print,
) -> Path:
    """Write the student release to ``out`` (and ``out``.zip) with the stubs in ``lang``;
    return ``out``."""
    from builders.notebooks import build_notebooks

    stubs = student_stubs(lang)  # before anything is written: a missing translation fails here
    if missing := missing_public_tests():
        log(f"warning: the rubric names public test files that do not exist; left out: {', '.join(missing)}")
    out = Path(out).resolve()
    if out == ROOT or ROOT.is_relative_to(out):
        raise ReleaseError(f"refusing to build into {out}")
    if out.exists() and any(out.iterdir()):
        if not ((out / "transformer").is_dir() and (out / "grader" / "rubric.toml").is_file()):
            raise ReleaseError(f"{out} exists and is not a previous student release: refusing to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)

    # The student's package: the stubs, in the release's language.
    (out / "transformer").mkdir()
    for name, text in stubs.items():
        (out / "transformer" / name).write_text(text, encoding="utf-8")
    # Public tests and their support code.
    copy_file(ROOT / "tests" / "conftest.py", out / "tests" / "conftest.py")
    copy_tree(ROOT / "tests" / "support", out / "tests" / "support")
    copy_tree(ROOT / "tests" / "public", out / "tests" / "public")
    # The grader, without the grading-only corpus generator; its rubric lists public test files
    # only; the built-in task's public splits as data files.
    copy_tree(
        ROOT / "grader",
        out / "grader",
        skip=lambda rel: (
            rel.name == "rubric.toml"
            or rel.as_posix() in GRADING_ONLY
            or rel.as_posix().startswith(GENERATED_DATA + "/")
        ),
    )
    grading_only_modules = {"grader." + name.removesuffix(".py").replace("/", ".") for name in GRADING_ONLY}
    check_no_excluded_imports(out, NEVER_SHIPPED | grading_only_modules)
    write_public_data(out)
    strip_hidden_messages(out)
    rubric_text = render_rubric(
        course,
        keep_test=_student_test_filter,
        header=(
            "The rubric of the student release: only the PUBLIC test files are listed here.\n"
            "The real grade also runs hidden tests (more cases of the same specification) and\n"
            "trains your model for the `translation` part; points per part are as graded.\n"
            f"Course: {course.name}. Generated by the instructors' `make release`; do not edit."
        ),
    )
    (out / "grader" / "rubric.toml").write_text(rubric_text, encoding="utf-8")
    # Project files and the student templates.
    write_requirements(out / "requirements.txt")
    copy_file(ROOT / "pyproject.toml", out / "pyproject.toml")
    templates = TEMPLATES / "student"
    for path in sorted(templates.rglob("*")):
        rel = path.relative_to(templates)
        if path.is_file() and not _ignored(rel) and rel.as_posix() not in READMES:
            copy_file(path, out / rel)
    copy_file(ROOT / "mk" / "check.mk", out / "mk" / "check.mk")  # the student Makefile's `make check`
    for name, readme_lang in READMES.items():  # every language's README, whatever the stubs' language
        (out / name).write_text(render_readme(course, rubric_text, readme_lang), encoding="utf-8")
    # Companion notebooks, defaulting to the student's own package (IMPL=".").
    for notebook_lang in ("en", "ja"):
        build_notebooks(lang=notebook_lang, out=out / "notebooks" / notebook_lang, default_impl=".")

    check_no_leaks(out, hidden_tests_allowed=False)
    check_no_test_split(out)
    if verify:
        started = time.monotonic()
        table = verify_student_release(out, python=python)
        log(
            f"verified: `make check` in the release reports 0 points on the stubs "
            f"({len(table)} parts, {time.monotonic() - started:.1f} s)"
        )
    _clean_build_litter(out)
    if make_zip:
        zip_path = out.with_suffix(".zip")
        names = write_zip(out, zip_path, prefix=course.release_name)
        log(f"wrote {zip_path} ({len(names)} files)")
    return out


def clean_make_env(**extra: str) -> dict[str, str]:
    """The environment for a nested ``make``: nothing inherited from an outer make's
    command line (``make release IMPL=...`` must not leak into the release's ``make check``)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "MAKEFILES", "IMPL", "PART", "PY", "VENV", "OUT"}
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


# Loaded into the verification run only (``-p``): failing hypothesis tests skip the shrink
# and explain phases. Every test still runs its explicit and generated examples, so what
# passes and what fails is unchanged — but on the stubs, where everything fails, shrinking
# would cost seconds per test.
_FAST_FAILURES_PLUGIN = """
from hypothesis import Phase, settings


def pytest_configure(config):
    settings.register_profile("release-verify", parent=settings.default, phases=[Phase.explicit, Phase.generate])
    settings.load_profile("release-verify")
"""


def run_release_check(
    folder: Path, results_json: Path, python: str = sys.executable, timeout: float = 900
) -> subprocess.CompletedProcess:
    """Run the release's own ``make check`` with ``python`` (no virtual environment made);
    every test's outcome, per part, goes to ``results_json`` (``--part-results-json``)."""
    if shutil.which("make") is None:
        raise ReleaseError("`make` is not installed: cannot verify the release's Makefile")
    with tempfile.TemporaryDirectory() as plugins:
        (Path(plugins) / "_release_verify_plugin.py").write_text(_FAST_FAILURES_PLUGIN, encoding="utf-8")
        options = ["-p _release_verify_plugin", f"--part-results-json {shlex.quote(str(results_json))}"]
        extra = {
            "PYTHONPATH": os.pathsep.join(filter(None, [plugins, os.environ.get("PYTHONPATH", "")])),
            "PYTEST_ADDOPTS": " ".join(filter(None, [os.environ.get("PYTEST_ADDOPTS", ""), *options])),
        }
        return subprocess.run(
            ["make", "--no-print-directory", "check", f"PY={python}", "IMPL=.", "PART="],
            cwd=folder,
            env=clean_make_env(**extra),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def verify_student_release(folder: Path, python: str = sys.executable) -> dict[str, tuple[int, int, float, float]]:
    """The release's ``make check`` must report 0 points on the stubs, for every part with
    public tests. Returns {part: (passed, tests, earned, points)}."""
    with tempfile.TemporaryDirectory() as tmp:
        results_json = Path(tmp) / "results.json"
        result = run_release_check(folder, results_json, python)
        records = json.loads(results_json.read_text(encoding="utf-8")) if results_json.is_file() else None
    output = result.stdout + result.stderr
    rubric = tomllib.loads((folder / "grader" / "rubric.toml").read_text(encoding="utf-8"))
    expected = {
        name
        for name, spec in rubric["parts"].items()
        if any((folder / test).is_file() for test in spec.get("tests", ()))
    }
    problems = []
    if records is None:
        problems.append("no test results: `make check` did not run the tests")
    parts = {}
    for name, tests in (records or {}).items():
        passed, points = sum(test["passed"] for test in tests), float(rubric["parts"][name]["points"])
        parts[name] = (passed, len(tests), points * passed / len(tests), points)
    missing = sorted(expected - set(parts))
    if missing:
        problems.append(f"parts with public tests missing from the results (collection errors?): {missing}")
    earning = sorted(name for name, (passed, *_) in parts.items() if passed)
    if earning:
        problems.append(f"parts with passing tests (points) on the stubs: {earning}")
    if result.returncode == 0:
        problems.append("`make check` exited 0 although every test must fail on the stubs")
    if problems:
        raise ReleaseError(
            "the student release failed its self-verification:\n  - "
            + "\n  - ".join(problems)
            + f"\n--- make check output (exit {result.returncode}) ---\n{output[-6000:]}"
        )
    return parts


# -- the Gradescope autograder -----------------------------------------------------------------


def build_autograder(zip_path: Path, course: Course, *, log=print) -> Path:
    """Write the Gradescope autograder zip; return its path."""
    zip_path = Path(zip_path).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / "autograder"
        templates = TEMPLATES / "autograder"
        copy_file(templates / "setup.sh", stage / "setup.sh", executable=True)
        copy_file(templates / "run_autograder", stage / "run_autograder", executable=True)
        # The course's language reaches Gradescope as --lang (the zip carries no course.toml);
        # a --lang of the course's own grade_args comes later and wins.
        grade_args = ("--lang", course.language, *course.grade_args)
        check_grade_args(grade_args)
        (stage / "grade_args.txt").write_text("".join(f"{arg}\n" for arg in grade_args), encoding="utf-8")
        write_requirements(stage / "requirements.txt")
        copy_file(ROOT / "pyproject.toml", stage / "pyproject.toml")
        copy_tree(
            ROOT / "grader",
            stage / "grader",
            skip=lambda rel: rel.name == "rubric.toml" or rel.as_posix().startswith(GENERATED_DATA + "/"),
        )
        check_no_excluded_imports(stage, NEVER_SHIPPED)
        rubric_text = render_rubric(
            course,
            header=(
                "The rubric of the Gradescope autograder (public and hidden tests).\n"
                f"Course: {course.name}. Generated by `make autograder` from grader/rubric.toml and course.toml."
            ),
        )
        (stage / "grader" / "rubric.toml").write_text(rubric_text, encoding="utf-8")
        copy_file(ROOT / "tests" / "conftest.py", stage / "tests" / "conftest.py")
        for sub in ("support", "public", "hidden"):
            if (ROOT / "tests" / sub).is_dir():
                copy_tree(ROOT / "tests" / sub, stage / "tests" / sub)
        check_no_leaks(stage, hidden_tests_allowed=True)
        names = write_zip(stage, zip_path)
    for required in ("setup.sh", "run_autograder"):
        if required not in names:
            raise ReleaseError(f"{required} is not at the root of {zip_path}")
    log(f"wrote {zip_path} ({len(names)} files; upload it on Gradescope, see docs/gradescope.md)")
    return zip_path


# -- command line ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from grader.cli import HelpFormatter, add_version

    parser = argparse.ArgumentParser(
        prog="python -m builders.release", description=__doc__, formatter_class=HelpFormatter
    )
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    student = sub.add_parser(
        "student",
        help="build dist/student/ and dist/student.zip",
        formatter_class=HelpFormatter,
        description="Build the student release: a folder and its zip.",
    )
    student.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="course config (default: course.toml)")
    student.add_argument(
        "--lang",
        choices=STUDENT_LANGUAGES,
        default="en",
        help="language of the stubs' docstrings and hints (default: en); both READMEs are always included",
    )
    student.add_argument(
        "--out",
        type=Path,
        default=ROOT / "dist" / "student",
        help="the release folder; the zip is written beside it as OUT.zip",
    )
    student.add_argument(
        "--no-verify", action="store_true", help="skip running the release's `make check` on the stubs"
    )
    student.add_argument("--no-zip", action="store_true", help="write the folder only")
    autograder = sub.add_parser(
        "autograder",
        help="build dist/autograder.zip for Gradescope",
        formatter_class=HelpFormatter,
        description="Build the Gradescope autograder zip.",
    )
    autograder.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="course config (default: course.toml)")
    autograder.add_argument(
        "--out", type=Path, default=ROOT / "dist" / "autograder.zip", help="the zip to upload on Gradescope"
    )
    args = parser.parse_args(argv)
    try:
        course = load_course(args.config)
        started = time.monotonic()
        if args.command == "student":
            out = build_student(args.out, course, lang=args.lang, verify=not args.no_verify, make_zip=not args.no_zip)
            print(f"student release ({args.lang}) in {out} ({time.monotonic() - started:.1f} s)")
        else:
            build_autograder(args.out, course)
    except (ReleaseError, CourseError) as error:
        print(f"release: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
