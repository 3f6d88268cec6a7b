"""The grade and grade-all commands, end to end, on the real solutions/ and assignments/.

Two ``grade-all`` runs, side by side, keep this under a minute on two cores: the reference
twice (results must be identical apart from timings and the seal) and a zip of a nested
folder whose normalization uses nn.LayerNorm, graded on ``masks``; the stubs and the
reference with a syntax error in attention.py, graded on ``masks`` and ``attention`` (those
fail fast). Parts without test files in this installation are left out.

The language: a small broken submission graded with ``--lang ja`` and ``--lang en`` (and with
neither, under a Japanese locale: the course's language, else English) — what the student
reads follows the language, ``extra_data`` and the scores do not.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pytest

from grader import grade as grade_module
from grader import grade_all as grade_all_module
from grader import i18n
from grader.__main__ import main as grader_main
from grader.results import Check, GradeResult, PartResult, Text, english, fallback_results, render_report, verify
from grader.rubric import load_rubric
from grader.sandbox import static_check, tripwires
from grader.sandbox.proxy import WorkerCrashed, student_error
from grader.translation import grading

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "grader" / "schemas" / "gradescope_results.schema.json").read_text())
RUBRIC = load_rubric()


def has_tests(part: str) -> bool:
    return any((ROOT / t).is_file() for t in RUBRIC.parts[part].tests)


CHEAP_PARTS = [p for p in ("masks",) if has_tests(p)]
FAILING_PARTS = [p for p in ("masks", "attention") if has_tests(p)]
GROUPS = {"reference": ("sol_a", "sol_b", "bob"), "failing": ("stubs", "broken")}

LAYER_NORM_CHEAT = '''

class LayerNorm(nn.Module):
    """Uses the built-in: the grader must flag it."""

    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.inner = nn.LayerNorm(d_model, eps=eps)

    def forward(self, x):
        return self.inner(x)
'''


@pytest.fixture(autouse=True)
def english_by_default(monkeypatch):
    """Each test starts in English and leaves the process's language as it found it."""
    monkeypatch.setattr(i18n, "_chosen", None)
    monkeypatch.setenv(i18n.OVERRIDE_VARIABLE, "en")
    i18n.set_language("en")


def make_submissions(base: Path) -> None:
    package = ROOT / "solutions" / "transformer"
    ignore = shutil.ignore_patterns("__pycache__")
    for name in ("sol_a", "sol_b"):
        shutil.copytree(package, base / "reference" / name / "transformer", ignore=ignore)
    with zipfile.ZipFile(base / "reference" / "bob.zip", "w") as zf:
        for path in sorted(package.glob("*.py")):
            text = path.read_text()
            if path.name == "normalization.py":
                text += LAYER_NORM_CHEAT
            zf.writestr(f"bob/transformer/{path.name}", text)
    shutil.copytree(ROOT / "assignments" / "transformer", base / "failing" / "stubs" / "transformer", ignore=ignore)
    shutil.copytree(package, base / "failing" / "broken" / "transformer", ignore=ignore)
    (base / "failing" / "broken" / "transformer" / "attention.py").write_text(
        "def scaled_dot_product_attention(:\n    pass\n"
    )


def grade_all_command(submissions: Path, out: Path, parts: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "grader",
        "grade-all",
        str(submissions),
        "--out",
        str(out),
        "--jobs",
        "1",
        "--parts",
        ",".join(parts),
        "--no-train",
        "--no-lock-repo",
    ]  # leave the checkout's modes alone


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    if not CHEAP_PARTS:
        pytest.skip("no test files for masks yet")
    base = tmp_path_factory.mktemp("grade_all")
    make_submissions(base)
    runs = {
        group: subprocess.Popen(
            grade_all_command(
                base / group, base / "out" / group, CHEAP_PARTS if group == "reference" else FAILING_PARTS
            ),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for group in GROUPS
    }
    for _group, run in runs.items():
        stdout, stderr = run.communicate(timeout=900)
        assert run.returncode == 0, stderr
    results = {s: json.loads((base / "out" / g / s / "results.json").read_text()) for g in GROUPS for s in GROUPS[g]}
    return base, results


def part_scores(results: dict) -> dict:
    return {name: (info["score"], info["max_score"]) for name, info in results["extra_data"]["parts"].items()}


def full(part: str) -> tuple[float, float]:
    return (RUBRIC.parts[part].points, RUBRIC.parts[part].points)


def test_every_results_json_follows_the_gradescope_schema_and_is_sealed(graded):
    _, results = graded
    for student, data in results.items():
        jsonschema.validate(data, SCHEMA)
        assert verify(data), student
        assert not [t for t in data["tests"] if t["name"].startswith("translation")]  # --no-train


def test_schema_has_teeth():
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"score": 1, "tests": [{"name": "x", "status": "ok"}]}, SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"score": 1, "surprise": True}, SCHEMA)


def test_the_reference_gets_full_marks_and_hidden_checks_are_hidden(graded):
    _, results = graded
    data = results["sol_a"]
    assert data["score"] == pytest.approx(sum(RUBRIC.parts[p].points for p in CHEAP_PARTS))
    assert all(t["status"] == "passed" for t in data["tests"])
    for test in data["tests"]:
        hidden = "hidden" in test["tags"]
        assert test["visibility"] == ("after_published" if hidden else "visible")
    assert data["extra_data"]["flags"] == []


def strip_run_specific(data: dict) -> dict:
    data = json.loads(json.dumps(data))
    data.pop("execution_time")
    for key in ("timings", "authenticity", "submission"):
        data["extra_data"].pop(key)
    for key in ("user", "worker_uid"):  # as root each grade's workers get a uid of their own
        data["extra_data"].get("sandbox", {}).pop(key, None)
    return data


def test_grading_is_deterministic(graded):
    _, results = graded
    assert strip_run_specific(results["sol_a"]) == strip_run_specific(results["sol_b"])


def test_the_stubs_score_zero_with_readable_messages(graded):
    _, results = graded
    data = results["stubs"]
    assert data["score"] == 0
    assert all(t["status"] == "failed" for t in data["tests"])
    assert all("not implemented yet" in t["output"] for t in data["tests"]), data["tests"][0]["output"]
    assert not [f for f in data["extra_data"]["flags"] if f.startswith("grader-error")]
    for test in data["tests"]:
        assert test["visibility"] == ("after_published" if "hidden" in test["tags"] else "visible")
    if (ROOT / "tests" / "hidden" / "test_attention_hidden.py").is_file() and "attention" in FAILING_PARTS:
        assert any("hidden" in t["tags"] for t in data["tests"])


def test_a_broken_file_costs_exactly_its_part(graded):
    base, results = graded
    data = results["broken"]
    scores = part_scores(data)
    assert scores["masks"] == full("masks")
    if "attention" in FAILING_PARTS:
        assert scores["attention"] == (0, RUBRIC.parts["attention"].points)
        attention_outputs = [t["output"] for t in data["tests"] if t["name"].startswith("attention:")]
        assert all("SyntaxError" in o and "transformer/attention.py" in o for o in attention_outputs)
        assert all("grader/" not in o and "Traceback" not in o for o in attention_outputs)
        report = (base / "out" / "failing" / "broken" / "report.md").read_text()
        assert "| attention" in report and "## Failed checks" in report and "SyntaxError" in report


def test_a_nested_zip_is_accepted_and_nn_layer_norm_is_flagged(graded):
    base, results = graded
    data = results["bob"]
    assert part_scores(data)["masks"] == full("masks")
    flags = data["extra_data"]["flags"]
    assert any(f.startswith("banned: nn.LayerNorm") and "normalization" in f for f in flags), flags
    assert "nn.LayerNorm" in data["output"]
    with open(base / "out" / "reference" / "gradebook.csv", newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    assert "nn.LayerNorm" in rows["bob"]["flags"]


def test_the_gradebook_has_a_row_per_student_and_grade_all_resumes(graded):
    base, results = graded
    with open(base / "out" / "reference" / "gradebook.csv", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        maxima = next(reader)  # the first row: the points possible
        rows = {row[0]: row for row in reader}
    graded_parts = [name for name in RUBRIC.parts if name in CHEAP_PARTS]
    assert header == ["student", "total", *graded_parts, "flags"]
    assert maxima[0] == "(points possible)"
    assert set(rows) == set(GROUPS["reference"])
    assert float(rows["sol_a"][1]) == round(results["sol_a"]["score"], 2)
    again = subprocess.run(
        grade_all_command(base / "reference", base / "out" / "reference", CHEAP_PARTS),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert "3 already graded, grading 0" in again.stderr


def test_an_archive_escaping_its_folder_is_rejected_cleanly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "ci")
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("transformer/masks.py", "X = 1\n")
        zf.writestr("../evil", "gotcha")
    status = grader_main(["grade", str(archive), "--out", str(tmp_path / "out"), "--parts", "masks", "--no-lock-repo"])
    assert status == 0
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    jsonschema.validate(data, SCHEMA)
    assert data["score"] == 0 and "outside the archive" in data["extra_data"]["rejected"]
    assert not (tmp_path.parent / "evil").exists()
    assert grader_main(["grade", str(tmp_path / "missing"), "--out", str(tmp_path / "o2")]) == 2
    assert grader_main(["grade", str(archive), "--out", str(tmp_path / "o3"), "--parts", "nope"]) == 2


# --- scoring rules, without running anything -------------------------------------------------


def part(name: str, passed: list[bool]) -> PartResult:
    result = PartResult(
        name,
        name,
        RUBRIC.parts[name].points,
        checks=[Check(name, f"{name}: check {i}", ok, "" if ok else "wrong") for i, ok in enumerate(passed)],
    )
    grade_module.share_points(result)
    return result


@pytest.mark.parametrize("count", [1, 3, 7, 21, 44, 143])
def test_shared_points_add_up_exactly_at_two_decimals(count):
    """The shares shown in results.json (whole cents) add up to the part's points: no drift."""
    for name, spec in RUBRIC.parts.items():
        if name == "translation":
            continue
        result = part(name, [True] * count)
        shown = [round(c.max_score, 2) for c in result.checks]
        assert shown == [c.max_score for c in result.checks], "every share is a whole cent"
        assert round(sum(shown) * 100) == round(spec.points * 100), (name, count, sum(shown))
        assert max(shown) - min(shown) <= 0.01 + 1e-12, "equal shares, up to one cent"


def test_points_are_shared_equally_and_dependency_notes_come_first():
    attention, masks, layers, model = (
        part("attention", [True, False]),
        part("masks", [True]),
        part("layers", [False, True, True]),
        part("model", [False]),
    )
    assert attention.score == pytest.approx(RUBRIC.parts["attention"].points / 2)
    grade_module.dependency_notes([attention, masks, layers, model], RUBRIC)
    expected = "Note: part `attention` also lost points; fix it first — `layers` builds on it."
    assert layers.note == expected and layers.checks[0].output.startswith(expected)
    assert layers.checks[1].output == ""  # passed checks get no note
    assert model.note.startswith("Note: part `layers` also lost points")
    assert attention.note == "" and masks.note == ""


def test_a_banned_call_zeroes_the_part_and_says_why():
    normalization = part("normalization", [True, True])
    parts, text = grade_module.attribute_violation(
        {
            "call": "F.layer_norm",
            "file": "transformer/helpers.py",
            "line": 3,
            "rule": "no",
            "student_files": ["transformer/helpers.py", "transformer/normalization.py"],
            "extra_parts": [],
        },
        "layers",
        RUBRIC.parts,
    )
    assert parts == {"normalization"}
    grade_module.apply_violations(normalization, [text])
    assert normalization.score == 0 and normalization.max_score == RUBRIC.parts["normalization"].points
    told = [c for c in normalization.checks if "F.layer_norm" in c.output]  # once, on its own check
    assert [c.name for c in told] == ["normalization: uses only allowed building blocks"]
    assert [c.voided for c in normalization.checks] == [True, True, False]


class FailingJobProxy:
    """A worker whose training job fails with ``error``."""

    def __init__(self, error: Exception):
        self.error = error

    def call_trusted(self, name, payload):
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        student_error(
            {"type": "NotImplementedError", "builtin": "NotImplementedError", "message": "model.Transformer"}
        ),
        student_error({"type": "MyError", "builtin": "Exception", "message": "mine"}),
        WorkerCrashed("your code was killed by signal SIGKILL in part `translation`"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_the_students_errors_in_training_reach_the_grade_as_they_are(tmp_path, error):
    """An error of the student's code (whatever builtin class it subclasses) or a crash leaves
    grade_translation as it is, for run_translation to report as the tests' checks do; any other
    error of the job is the part's failed check, with the job's traceback."""
    corpus = SimpleNamespace(train=[("a b", "あ い")], valid=[], test=[("a", "あ")])
    with pytest.raises(type(error)) as raised:
        grading.grade_translation(FailingJobProxy(error), RUBRIC.parts["translation"], tmp_path, corpus=corpus)
    assert raised.value is error
    (check,) = grading.grade_translation(
        FailingJobProxy(RuntimeError("the job broke")), RUBRIC.parts["translation"], tmp_path, corpus=corpus
    )
    assert check["score"] == 0 and "RuntimeError: the job broke" in check["output"]


# --- the language of what the student reads --------------------------------------------------

LANGUAGE_PARTS = [p for p in ("masks", "feed_forward") if has_tests(p)]
# A phrase of each language the grader itself writes for this submission (grader.po).
PHRASES = {
    "ja": {
        "report": ["# 採点レポート", "**合計:", "## 不合格のチェック", "## 指摘事項", "まだ実装されていません"],
        "output": ["パート", "合計", "指摘事項:", "要確認: transformer/feed_forward.py:"],
    },
    "en": {
        "report": ["# Grade report", "**Total:", "## Failed checks", "## Flags", "not implemented yet"],
        "output": ["part", "total", "Flags:", "suspicious: importlib in transformer/feed_forward.py:"],
    },
}
JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def make_language_submission(folder: Path) -> Path:
    """The reference with masks.py replaced by the stub (masks fails: not implemented yet) and
    an unused ``import importlib`` in feed_forward.py (a suspicious flag; the part still passes)."""
    package = folder / "transformer"
    shutil.copytree(ROOT / "solutions" / "transformer", package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "assignments" / "transformer" / "masks.py", package / "masks.py")
    with open(package / "feed_forward.py", "a", encoding="utf-8") as f:
        f.write("\nimport importlib  # noqa\n")
    return folder


@pytest.fixture(scope="module")
def by_language(tmp_path_factory):
    """{"ja" | "en" | "default": (results, report.md, stdout)} for one broken submission."""
    if len(LANGUAGE_PARTS) < 2:
        pytest.skip("no test files for masks and feed_forward yet")
    base = tmp_path_factory.mktemp("languages")
    submission = make_language_submission(base / "student")
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.pop(i18n.OVERRIDE_VARIABLE, None)
    runs = {}
    for lang in ("ja", "en", "default"):
        options = [] if lang == "default" else ["--lang", lang]
        # The default must not follow the machine's locale, however Japanese it is.
        japanese_locale = {"LANG": "ja_JP.UTF-8", "LANGUAGE": "ja", "LC_ALL": "ja_JP.UTF-8"}
        run_env = {**env, **japanese_locale} if lang == "default" else env
        command = [
            sys.executable,
            "-m",
            "grader",
            "grade",
            str(submission),
            "--out",
            str(base / lang),
            "--parts",
            ",".join(LANGUAGE_PARTS),
            "--no-train",
            "--no-lock-repo",
            "--print-seal",
            *options,
        ]
        runs[lang] = subprocess.Popen(
            command, cwd=ROOT, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8"
        )
    found = {}
    for lang, run in runs.items():
        stdout, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, stderr
        found[lang] = (
            json.loads((base / lang / "results.json").read_text(encoding="utf-8")),
            (base / lang / "report.md").read_text(encoding="utf-8"),
            stdout,
        )
    return found


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_what_the_student_reads_is_in_the_chosen_language(by_language, lang):
    results, report, stdout = by_language[lang]
    jsonschema.validate(results, SCHEMA)
    seal = re.search(r"^authenticity: nonce=([0-9a-f]+) sha256=([0-9a-f]+)$", stdout, re.M)
    assert seal and verify(results, *seal.groups())
    for phrase in PHRASES[lang]["report"]:
        assert phrase in report, (phrase, report[:1500])
    for phrase in PHRASES[lang]["output"]:
        assert phrase in results["output"], (phrase, results["output"])
    assert PHRASES[lang]["output"][0] in stdout  # the terminal table
    failed = [t for t in results["tests"] if t["status"] == "failed"]
    assert failed and all(t["name"].startswith("masks:") for t in failed)
    if lang == "ja":
        assert JAPANESE.search(results["output"]) and JAPANESE.search(report)
        assert all(JAPANESE.search(t["output"]) for t in failed), failed[0]["output"]
        assert all("まだ実装されていません" in t["output"] for t in failed)
    else:
        assert not JAPANESE.search(results["output"]) and not JAPANESE.search(report)
        assert not any(JAPANESE.search(t["output"]) for t in results["tests"])
        assert all("not implemented yet" in t["output"] for t in failed)


def test_the_language_changes_only_the_words(by_language):
    """Scores, check names and extra_data (instructor and machines: in English) do not change."""
    ja, en = by_language["ja"][0], by_language["en"][0]
    assert ja["score"] == en["score"] == RUBRIC.parts["feed_forward"].points
    assert [(t["name"], t["score"], t["status"]) for t in ja["tests"]] == [
        (t["name"], t["score"], t["status"]) for t in en["tests"]
    ]
    assert strip_run_specific(ja)["extra_data"] == strip_run_specific(en)["extra_data"]
    assert any(f.startswith("suspicious: importlib in transformer/feed_forward.py") for f in ja["extra_data"]["flags"])


def test_the_default_is_the_course_language_never_the_locale(by_language):
    expected = grade_module.course_language() or "en"
    results, report, _ = by_language["default"]
    assert results["output"] == by_language[expected][0]["output"]
    assert report == by_language[expected][1]


def test_the_language_is_fixed_before_the_tests_run(monkeypatch, tmp_path):
    """--lang, else course.toml, else English: set for this process (and its children)."""
    chosen = []
    monkeypatch.setattr(grade_module.intake, "prepare", lambda path: chosen.append(i18n.language()) or 1 / 0)
    options = grade_module.GradeOptions(
        submission=tmp_path, out=tmp_path / "out", parts="masks", train=False, lang="ja", total_timeout=60.0
    )
    with pytest.raises(ZeroDivisionError):
        grade_module.grade(options)
    assert chosen == ["ja"] and os.environ[i18n.OVERRIDE_VARIABLE] == "ja"
    monkeypatch.setattr(grade_module, "course_language", lambda: None)
    assert grade_module.grading_language(None) == "en"
    monkeypatch.setattr(grade_module, "course_language", lambda: "ja")
    assert grade_module.grading_language(None) == "ja"
    assert grade_module.grading_language("en") == "en"


def test_grade_all_passes_the_language_on(monkeypatch, tmp_path):
    commands = []

    def fake_run(command, **kwargs):
        commands.append(command)
        return subprocess.CompletedProcess(command, 3, "", "stopped by the test")

    monkeypatch.setattr(grade_all_module.subprocess, "run", fake_run)
    parser = argparse.ArgumentParser()
    grade_all_module.add_arguments(parser)
    for options, expected in ((["--lang", "ja"], ["ja"]), ([], [])):
        args = parser.parse_args([str(tmp_path), "--out", str(tmp_path / "out"), *options])
        assert grade_all_module.grade_one("alice", tmp_path, args)[1].startswith("grader-error")
        command = commands[-1]
        assert command[3] == "grade" and [command[i + 1] for i, a in enumerate(command) if a == "--lang"] == expected


def test_grader_texts_render_in_both_languages():
    note = Text(
        i18n.N_("Note: part {names} also lost points; fix it first — `{part}` builds on it."),
        names="`masks`",
        part="model",
    )
    assert english(note) == note == "Note: part `masks` also lost points; fix it first — `model` builds on it."
    assert "`model`" in note.render("ja") and JAPANESE.search(note.render("ja"))
    i18n.set_language("ja")
    finding = static_check.Finding(
        "transformer/normalization.py", 3, "nn.LayerNorm", tripwires.RULE_NORM, "banned", ("normalization",)
    )
    assert finding.describe().startswith("禁止: transformer/normalization.py:3 の nn.LayerNorm")
    assert "レイヤー正規化" in finding.describe()
    assert english(finding.describe()).startswith("banned: nn.LayerNorm in transformer/normalization.py:3")
    assert "担当者" in fallback_results(1)["output"]
    grade = GradeResult("alice", flags=[finding.describe()], rejected="bad zip")
    assert "## 指摘事項" in render_report(grade) and "提出物を採点できませんでした" in render_report(grade)


def test_every_tripwire_rule_has_a_translation():
    """tripwires.py imports nothing from the grader: static_check marks its rules for translation."""
    assert {ban.rule for ban in tripwires.BANS} <= set(static_check.TRIPWIRE_RULES)
    for rule in static_check.TRIPWIRE_RULES:
        assert i18n.in_language("ja", rule) != rule, rule
    removed = "the grader's check on nn.LayerNorm was removed or replaced (tampering) — " + tripwires.RULE_NORM
    assert english(static_check.rule_text(removed)) == removed
    assert static_check.rule_text(removed).render("ja").startswith("採点システムによる nn.LayerNorm の監視")


def test_the_autograder_fallback_speaks_the_grade_language(tmp_path):
    """run_autograder's own results.json (the grader failed: here, no submission) follows --lang."""
    env = {
        **os.environ,
        "AUTOGRADER_ROOT": str(tmp_path),
        "AUTOGRADER_SOURCE": str(ROOT),
        "AUTOGRADER_PYTHON": sys.executable,
        "AUTOGRADER_ARGS": "--lang ja --no-lock-repo",
    }
    done = subprocess.run(
        ["bash", str(ROOT / "release" / "autograder" / "run_autograder")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "results" / "results.json").read_text(encoding="utf-8"))
    assert results["score"] == 0 and "自動採点システム" in results["output"], results


# --- parts at once (grade --part-jobs, grader/grade.py: grade_in_lanes) ---------------------------

LANE_PARTS = [p for p in ("masks", "attention", "normalization") if has_tests(p)]


def grade_command(submission: Path, out: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "grader", "grade", str(submission), "--out", str(out), "--no-lock-repo", *options]


def test_parts_at_once_grade_exactly_as_one_after_the_other(tmp_path):
    """A broken part, a flagged part and a passing one, graded in one judge process and in three:
    the same results.json (flags in the same order), apart from timings and the seal."""
    if len(LANE_PARTS) < 2:
        pytest.skip("fewer than two parts with tests in this installation")
    make_submissions(tmp_path)
    mixed = tmp_path / "mixed"
    shutil.copytree(tmp_path / "failing" / "broken", mixed)
    with zipfile.ZipFile(tmp_path / "reference" / "bob.zip") as zf:  # nn.LayerNorm inside: flagged
        (mixed / "transformer" / "normalization.py").write_text(zf.read("bob/transformer/normalization.py").decode())
    graded = {}
    for jobs in ("1", "3"):
        done = subprocess.run(
            grade_command(mixed, tmp_path / f"out{jobs}", "--parts", ",".join(LANE_PARTS), "--part-jobs", jobs),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
        assert "left behind" not in done.stderr, done.stderr  # a lane's workers are its own to reap
        graded[jobs] = json.loads((tmp_path / f"out{jobs}" / "results.json").read_text())
    assert strip_run_specific(graded["1"]) == strip_run_specific(graded["3"])
    parts = graded["3"]["extra_data"]["parts"]
    assert parts["masks"]["score"] == RUBRIC.parts["masks"].points
    if "attention" in parts:
        assert parts["attention"]["score"] == 0


LANE_DIES = """
import os, sys
from grader import grade
from grader.__main__ import main

graded = grade.run_tested_part
def run_tested_part(part, *args, **kwargs):  # the judge process grading {part} dies
    if part.name == {part!r}:
        os._exit(3)
    return graded(part, *args, **kwargs)
grade.run_tested_part = run_tested_part
sys.exit(main(sys.argv[1:]))
"""


def test_a_judge_process_that_dies_costs_the_grader_not_the_student(tmp_path):
    """A lane that ends without answering: its part says the grader could not run it (a
    grader-error flag for the instructor), every other part is graded as usual."""
    if len(LANE_PARTS) < 2:
        pytest.skip("fewer than two parts with tests in this installation")
    dying = LANE_PARTS[1]
    script = tmp_path / "dying_lane.py"
    script.write_text(LANE_DIES.format(part=dying))
    command = grade_command(ROOT / "solutions", tmp_path / "out", "--parts", ",".join(LANE_PARTS), "--part-jobs", "2")
    done = subprocess.run(
        [sys.executable, str(script), *command[3:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    parts = results["extra_data"]["parts"]
    for name in LANE_PARTS:
        if name != dying:
            assert parts[name]["score"] == RUBRIC.parts[name].points, (name, parts[name])
    assert parts[dying]["score"] == 0
    (check,) = [t for t in results["tests"] if t["name"].startswith(f"{dying}:")]
    assert "not your fault" in check["output"]
    assert any(f.startswith(f"grader-error: part {dying}: the judge process") for f in results["extra_data"]["flags"])


def test_grade_all_leaves_each_grade_the_cores_no_other_grade_uses(monkeypatch):
    monkeypatch.setattr(grade_module, "default_part_jobs", lambda threads=1: 8)
    assert [grade_all_module.local_part_jobs(jobs) for jobs in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    args = SimpleNamespace(**dict.fromkeys(grade_all_module.PASSTHROUGH), no_train=False, no_lock_repo=False)
    assert grade_all_module.grade_options(args)[:2] == ["--part-jobs", "1"]  # a cluster: a grade per core
