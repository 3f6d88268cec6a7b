"""The student release (`python -m grader.release student`): it builds, its own `make check`
works and reports 0 points on the untouched stubs, and it gives nothing away — no solution
code, no hidden test, no `solutions/` or `tests/hidden/` folder.

The leak search here is deliberately independent of the one in grader/release.py (which the
build runs too): every line of every BEGIN/END SOLUTION block and every line of every hidden
test file, whitespace-normalised, at least 20 characters, comments left out, and lines that
the public-by-design files (public tests, their support code, the grader's trusted runtime
shared by public and hidden tests) contain too left out — is searched in every file of the
release (notebooks: their cells' sources).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from grader import release
from grader.rubric import load_rubric

ROOT = Path(__file__).resolve().parents[2]
MIN_CHARS = 20
PUBLIC_BY_DESIGN = ["tests/public", "tests/support", "tests/conftest.py", "grader/runtime"]


def normalise(line: str) -> str:
    return " ".join(line.split())


def public_lines() -> str:
    text = []
    for name in PUBLIC_BY_DESIGN:
        path = ROOT / name
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            text += [normalise(line) for line in file.read_text(encoding="utf-8").splitlines()]
    return "\n".join(text)


def substantial(line: str) -> bool:
    return len(line) >= MIN_CHARS and not line.startswith("#")


def solution_lines() -> dict[str, str]:
    public = public_lines()
    found = {}
    for path in sorted((ROOT / "solutions" / "transformer").glob("*.py")):
        inside = False
        for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "# BEGIN SOLUTION" in raw:
                inside = True
            elif "# END SOLUTION" in raw:
                inside = False
            elif inside and substantial(line := normalise(raw)) and line not in public:
                found[line] = f"{path.name}:{number}"
    return found


def hidden_lines() -> dict[str, str]:
    public = public_lines()
    found = {}
    for path in sorted((ROOT / "tests" / "hidden").rglob("*.py")):
        for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if substantial(line := normalise(raw)) and line not in public:
                found[line] = f"{path.name}:{number}"
    return found


def file_text(path: Path) -> str:
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        raw = "\n".join("".join(cell["source"]) for cell in cells)
    else:
        raw = path.read_bytes().decode("utf-8", "replace")
    return "\n".join(normalise(line) for line in raw.splitlines())


def leaks(folder: Path, needles: dict[str, str]) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            text = file_text(path)
            found += [f"{path.relative_to(folder)}: {needle!r} ({where})" for needle, where in needles.items()
                      if needle in text]
    return found


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The release, built once for this module (its own `make check` runs in a test below)."""
    out = tmp_path_factory.mktemp("release") / "student"
    release.build_student(out, release.load_course(), verify=False, log=lambda message: None)
    return out


def test_the_needles_are_real():
    """The search would find something if it were there."""
    needles = solution_lines()
    assert len(needles) > 50, "expected many solution lines to search for"
    assert any("softmax" in line for line in needles)


def test_no_solutions_or_hidden_tests_folder(built):
    assert not (built / "solutions").exists()
    assert not (built / "tests" / "hidden").exists()
    assert not list(built.rglob("*_hidden.py"))
    names = zipfile.ZipFile(built.with_suffix(".zip")).namelist()
    assert not [n for n in names if "/solutions/" in n or "/tests/hidden/" in n or n.endswith("_hidden.py")]


def test_zip_holds_the_folder(built):
    archive = built.with_suffix(".zip")
    names = zipfile.ZipFile(archive).namelist()
    prefix = release.load_course().release_name + "/"
    assert all(n.startswith(prefix) for n in names)
    on_disk = sorted(p.relative_to(built).as_posix() for p in built.rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    assert sorted(n[len(prefix):] for n in names) == on_disk


def test_no_solution_line_anywhere_in_the_release(built):
    found = leaks(built, solution_lines())
    assert not found, "solution code in the student release:\n  " + "\n  ".join(found[:20])


def test_no_hidden_test_line_anywhere_in_the_release(built):
    if not list((ROOT / "tests" / "hidden").rglob("*.py")):
        pytest.skip("no hidden tests written yet")
    found = leaks(built, hidden_lines())
    assert not found, "hidden test code in the student release:\n  " + "\n  ".join(found[:20])


def test_the_package_is_the_stubs(built):
    stubs = ROOT / "assignments" / "transformer"
    for path in stubs.glob("*.py"):
        assert (built / "transformer" / path.name).read_text(encoding="utf-8") == path.read_text(encoding="utf-8")
    assert sorted(p.name for p in (built / "transformer").iterdir()) == sorted(p.name for p in stubs.glob("*.py"))


def test_grader_without_builders_and_rubric_without_hidden_tests(built):
    for name in release.BUILDERS:
        assert not (built / "grader" / name).exists(), f"grader/{name} is instructor-only"
    text = (built / "grader" / "rubric.toml").read_text(encoding="utf-8")
    assert "hidden" in text.lower()  # the note that the real grade runs hidden tests too
    rubric = load_rubric(built / "grader" / "rubric.toml")
    for part in rubric.parts.values():
        assert all(t.startswith("tests/public/") and (built / t).is_file() for t in part.tests), part
    public = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "tests" / "public").glob("test_*.py"))
    listed = sorted(t for part in rubric.parts.values() for t in part.tests)
    assert set(listed) <= set(public)


def test_readme_uses_the_course_config_and_names_the_banned_calls(built):
    course = release.load_course()
    readme = (built / "README.md").read_text(encoding="utf-8")
    assert course.name in readme and course.due in readme
    assert "$" not in readme.replace("$GITHUB", ""), "an unfilled template placeholder"
    for banned in ("nn.MultiheadAttention", "F.multi_head_attention_forward", "F.scaled_dot_product_attention",
                   "nn.Transformer", "nn.LayerNorm", "F.layer_norm", "F.cross_entropy", "nn.CrossEntropyLoss"):
        assert banned in readme, banned
    order = [readme.index(f"| `{part}` |") for part in
             ("masks", "attention", "feed_forward", "normalization", "embedding", "layers", "model", "decoding", "training")]
    assert order == sorted(order), "the parts must be listed in the order to implement them"


def test_course_overrides_reach_the_rubric_and_readme(tmp_path):
    config = tmp_path / "course.toml"
    config.write_text('[course]\nname = "Test Course"\ndue = "tomorrow"\n[rubric.points]\nattention = 30\n'
                      'translation = 10\n', encoding="utf-8")
    course = release.load_course(config)
    rubric = tomllib.loads(release.render_rubric(course))
    assert rubric["parts"]["attention"]["points"] == 30
    assert max(p for _, p in rubric["parts"]["translation"]["bleu_thresholds"]) == 10
    assert rubric["total"] == sum(p["points"] for p in rubric["parts"].values())
    readme = release.render_readme(course, release.render_rubric(course))
    assert "Test Course" in readme and "| `attention` | `transformer/attention.py` | 30 |" in readme
    config.write_text("[rubric.points]\nno_such_part = 3\n", encoding="utf-8")
    with pytest.raises(release.ReleaseError, match="no_such_part"):
        release.render_rubric(release.load_course(config))


def make_dry_run(folder: Path, *args: str) -> str:
    result = subprocess.run(["make", "-n", "--no-print-directory", *args], cwd=folder, capture_output=True,
                            text=True, env=release.clean_make_env())
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_student_makefile_targets_default_to_the_students_folder(built):
    py = f"PY={sys.executable}"
    assert "pytest tests/public --impl . " in make_dry_run(built, "check", py)
    assert "tests/public/test_attention.py --impl ." in make_dry_run(built, "check", "PART=attention", py)
    grade = make_dry_run(built, "grade", py)
    assert "-m grader grade . --out out/grade --no-train" in grade
    assert "--no-train" not in make_dry_run(built, "grade", "TRAIN=1", py)
    assert "-m grader train --impl . " in make_dry_run(built, "train", py)
    # Without PY, the first target creates the virtual environment.
    assert "-m venv .venv" in make_dry_run(built, "check")


def test_workflow_informs_without_failing(built):
    workflow = (built / ".github" / "workflows" / "check.yml").read_text(encoding="utf-8")
    assert "on:" in workflow and "push" in workflow
    assert "make check" in workflow and "GITHUB_STEP_SUMMARY" in workflow
    assert "continue-on-error: true" in workflow
    assert "download.pytorch.org/whl/cpu" in workflow
    assert "\t" not in workflow, "YAML must not contain tabs"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_release_make_check_reports_zero_points_on_the_stubs(built):
    """The release's own `make check`, run with this interpreter (no venv is created)."""
    table = release.verify_student_release(built)
    assert table and all(row[2] == 0 for row in table.values())
    assert not (built / ".venv").exists()
