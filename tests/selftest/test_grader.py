"""The grade and grade-all commands, end to end, on the real solutions/ and assignments/.

Two ``grade-all`` runs, side by side, keep this under a minute on two cores: the reference
twice (results must be identical apart from timings and the seal) and a zip of a nested
folder whose normalization uses nn.LayerNorm, graded on ``masks``; the stubs and the
reference with a syntax error in attention.py, graded on ``masks`` and ``attention`` (those
fail fast). Parts without test files in this installation are left out.
"""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest

from grader import grade as grade_module
from grader.__main__ import main as grader_main
from grader.results import Check, PartResult, verify
from grader.rubric import load_rubric

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
    (base / "failing" / "broken" / "transformer" / "attention.py").write_text("def scaled_dot_product_attention(:\n    pass\n")


def grade_all_command(submissions: Path, out: Path, parts: list[str]) -> list[str]:
    return [sys.executable, "-m", "grader", "grade-all", str(submissions), "--out", str(out), "--jobs", "1",
            "--parts", ",".join(parts), "--no-train", "--no-lock-repo"]  # leave the checkout's modes alone


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    if not CHEAP_PARTS:
        pytest.skip("no test files for masks yet")
    base = tmp_path_factory.mktemp("grade_all")
    make_submissions(base)
    runs = {
        group: subprocess.Popen(grade_all_command(base / group, base / "out" / group,
                                                  CHEAP_PARTS if group == "reference" else FAILING_PARTS),
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for group in GROUPS
    }
    for group, run in runs.items():
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
        rows = {row[0]: row for row in reader}
    assert header == ["student", "total", *RUBRIC.parts, "flags"]
    assert set(rows) == set(GROUPS["reference"])
    assert float(rows["sol_a"][1]) == results["sol_a"]["score"]
    again = subprocess.run(grade_all_command(base / "reference", base / "out" / "reference", CHEAP_PARTS),
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
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
    result = PartResult(name, name, RUBRIC.parts[name].points,
                        checks=[Check(name, f"{name}: check {i}", ok, "" if ok else "wrong") for i, ok in enumerate(passed)])
    grade_module.share_points(result)
    return result


def test_points_are_shared_equally_and_dependency_notes_come_first():
    attention, masks, layers, model = (part("attention", [True, False]), part("masks", [True]),
                                       part("layers", [False, True, True]), part("model", [False]))
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
        {"call": "F.layer_norm", "file": "transformer/helpers.py", "line": 3, "rule": "no",
         "student_files": ["transformer/helpers.py", "transformer/normalization.py"], "extra_parts": []},
        "layers", RUBRIC.parts)
    assert parts == {"normalization"}
    grade_module.apply_violations(normalization, [text])
    assert normalization.score == 0 and normalization.max_score == RUBRIC.parts["normalization"].points
    assert all("F.layer_norm" in c.output for c in normalization.checks)


def test_translation_is_reported_as_not_graded_when_training_is_unavailable(monkeypatch, tmp_path):
    monkeypatch.setattr(grade_module, "TRANSLATION_MODULE", "grader.translation.not_there_yet")
    result, violations = grade_module.run_translation(RUBRIC.parts["translation"], tmp_path, tmp_path, None, None, 0)
    assert result.status == "not graded" and result.message == "not graded (training unavailable)"
    assert result.score == 0 and result.max_score == RUBRIC.parts["translation"].points
    assert result.checks[0].name == "translation: not graded (training unavailable)"
