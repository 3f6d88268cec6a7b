"""report.md a TA reads in a minute, exact points, the live progress line, Gradescope's leaderboard
(issue 15, deliverables 1 and 4). Fast: results are built by hand; one real grade of three parts."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from grader import grade as grade_module
from grader import i18n
from grader.results import (
    Check,
    GradeResult,
    PartResult,
    Text,
    build_results,
    parts_table,
    points,
    progress_line,
    render_report,
)
from grader.rubric import load_rubric

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "grader" / "schemas" / "gradescope_results.schema.json").read_text())
RUBRIC = load_rubric()
BAN = Text(
    i18n.N_("banned: {call} (part {parts}, seen at run time) — {rule}"),
    call="F.scaled_dot_product_attention",
    parts="attention",
    rule="implement attention yourself",
)
STUB = "not implemented yet — embedding.TokenEmbedding.__init__: an nn.Embedding called embedding"


@pytest.fixture(autouse=True)
def english():
    i18n.set_language("en")


def make_part(name: str, outcomes: list, **fields) -> PartResult:
    """outcomes: True (passes), or (output, kind) of a failure."""
    spec = RUBRIC.parts[name]
    checks = [
        Check(
            name,
            f"{name}: check {i}",
            o is True,
            "" if o is True else o[0],
            hidden=i % 2 == 1,
            kind="" if o is True else o[1],
        )
        for i, o in enumerate(outcomes)
    ]
    part = PartResult(name, spec.title, spec.points, checks=checks, **fields)
    grade_module.share_points(part)
    return part


def example(i: int) -> str:
    return f"\nFailing test case: test_x(\n    seed={i},\n)"


def three_broken() -> GradeResult:
    """A stub (143 checks in all fail), a bug and a banned call, as in the issue."""
    embedding = make_part(
        "embedding",
        [(STUB + '\n  File "transformer/embedding.py", line 29' + example(i), "not_implemented") for i in range(23)],
    )
    masks = make_part(
        "masks",
        [True, True, True]
        + [("padding mask: wrong result\n  at [0]: expected 1, got 0" + example(i), "") for i in range(6)],
    )
    attention = make_part(
        "attention",
        [True] * 23
        + [("banned call — F.scaled_dot_product_attention is off limits" + example(i), "banned") for i in range(21)],
    )
    grade_module.apply_violations(attention, [BAN])
    layers = make_part(
        "layers", [(f"your code raised ValueError: shapes differ {i % 3}" + example(i), "") for i in range(22)]
    )
    model = make_part("model", [(STUB + example(i), "") for i in range(20)])
    parts = [masks, attention, embedding, layers, model]
    grade_module.dependency_notes(parts, RUBRIC)
    return GradeResult("student", parts=parts, flags=[BAN], nonce="0" * 32)


def test_points_are_exact_cents_and_the_maxima_add_up():
    """Every share is a whole cent; a part's maxima add up to its rubric points; the checks that
    pass earn the part's points times the fraction that passes, rounded to the cent."""
    rng = random.Random(15)
    for name, spec in RUBRIC.parts.items():
        if name == "translation":
            continue
        for count in (1, 3, 7, 9, 21, 44, 143):
            for passing in sorted({0, 1, count // 3, count - 1, count}):
                outcomes = [True] * passing + [("wrong", "")] * (count - passing)
                rng.shuffle(outcomes)
                part = make_part(name, outcomes)
                cents = [round(c.max_score * 100) for c in part.checks]
                assert [c / 100 for c in cents] == [c.max_score for c in part.checks]
                assert sum(cents) == round(spec.points * 100), (name, count, passing)
                assert max(cents) - min(cents) <= 1
                assert round(part.score * 100) == (2 * round(spec.points * 100) * passing + count) // (2 * count)
                assert all(c.score == (c.max_score if c.passed else 0) for c in part.checks)
    assert make_part("masks", [True] * 3 + [("wrong", "")] * 6).score == 2  # not 2.0001 / 2.01


def test_results_json_sums_to_the_rubric_total_and_shows_two_decimals():
    grade = three_broken()
    results = build_results(grade)
    jsonschema.validate(results, SCHEMA)
    total = sum(RUBRIC.parts[p.name].points for p in grade.parts)
    assert round(sum(t["max_score"] for t in results["tests"]), 2) == total == results["extra_data"]["max_score"]
    assert results["score"] == round(sum(t["score"] for t in results["tests"]), 2)
    assert all(
        round(t["score"], 2) == t["score"] and round(t["max_score"], 2) == t["max_score"] for t in results["tests"]
    )
    for text in (render_report(grade), parts_table(grade)):
        assert not re.search(r"\d\.\d{3,}", text), "points with more than two decimals"
    assert points(24.6294) == "24.63" and points(2.0) == "2" and points(0.5) == "0.5"


def test_verdicts():
    grade = three_broken()
    verdicts = {p.name: p.verdict() for p in grade.parts}
    assert verdicts == {
        "masks": "lost_points",
        "attention": "banned",
        "embedding": "not_attempted",
        "layers": "lost_points",
        "model": "lost_points",
    }  # model: the stub is embedding's
    assert make_part("feed_forward", [True, True]).verdict() == "complete"
    assert PartResult("x", "x", 1, status="not graded", message="training unavailable").verdict() == "not_graded"
    table = parts_table(grade)
    for words in ("lost points", "banned call: 0 points", "not attempted"):
        assert words in table


def test_report_collapses_identical_failures_and_names_a_ban_once():
    grade = three_broken()
    report = render_report(grade)
    assert len(report.encode()) < 25_000, len(report.encode())
    assert "23 checks fail with the same message" in report  # the stub: one entry, not 23
    assert report.count(STUB + "\n") <= 4  # the stub's entry (+ diagnosis), model's entry (+ diagnosis)
    assert "6 checks fail with the same message" in report  # masks: identical but for the example
    assert report.count(str(BAN)) == 1, "the banned call is named once (its part's section, not Flags too)"
    assert "21 checks stopped at the banned call." in report and "23 checks pass but do not count." in report
    assert "| part | checks passed | points | status |" in report and "|  |" not in report.split("## ")[0]
    sections = dict(re.findall(r"^### (\w+) — (.+)$", report, re.M))
    assert sections == {
        "masks": "lost points",
        "attention": "banned call: 0 points",
        "embedding": "not attempted",
        "layers": "lost points",
        "model": "lost points",
    }
    assert report.count("First diagnosis") == 4  # not for the banned part: the ban is its diagnosis
    results = build_results(grade)
    attention = [t for t in results["tests"] if t["tags"][0] == "attention"]
    assert sum(str(BAN) in t["output"] for t in attention) == 1  # told once, on its own check
    assert all("uses only allowed building blocks" in t["output"] for t in attention[:-1])


def test_the_live_progress_line_agrees_with_the_table():
    attention = make_part("attention", [True] * 23 + [("banned call — x" + example(i), "banned") for i in range(21)])
    live = progress_line(attention, banned=True)  # before apply_violations: as grade() prints it
    grade_module.apply_violations(attention, [BAN])
    row = next(
        line for line in parts_table(GradeResult("s", parts=[attention])).splitlines() if line.startswith("attention")
    )
    assert "0/44" in live and "0/44" in row and "0/16" in live.replace(" ", "") and "0/16" in row.replace(" ", "")
    assert "banned call: 0 points" in live and "banned call: 0 points" in row
    masks = make_part("masks", [True] * 3 + [("wrong", "")] * 6)
    assert progress_line(masks).startswith("masks: 3/9 checks pass, 2/6 points — lost points")


def test_failure_kind_tells_a_stub_of_this_part_and_a_banned_call():
    from grader.sandbox.proxy import StudentCodeError

    stub = StudentCodeError("x", "NotImplementedError", [("transformer/embedding.py", 29, "__init__", "raise")])
    assert grade_module.failure_kind(stub, "embedding") == "not_implemented"
    assert grade_module.failure_kind(stub, "model") == ""  # another part's stub: model lost points
    assert grade_module.failure_kind(StudentCodeError("x", "BannedCallError"), "attention") == "banned"
    assert grade_module.failure_kind(StudentCodeError("x", "ValueError"), "attention") == ""
    assert grade_module.failure_kind(AssertionError("x"), "masks") == ""


def test_leaderboard_is_the_translation_bleu_when_switched_on(tmp_path):
    translation = PartResult(
        "translation",
        "t",
        20,
        checks=[
            Check(
                "translation", "translation: BLEU", False, "BLEU 63.2", max_score=20, score=15, data={"bleu": 63.2417}
            )
        ],
    )
    grade = GradeResult("s", parts=[translation], nonce="0" * 32)
    on, off = build_results(grade, leaderboard=True), build_results(grade)
    jsonschema.validate(on, SCHEMA)
    assert on["leaderboard"] == [{"name": "BLEU (translation)", "value": 63.24, "order": "desc"}]
    assert "leaderboard" not in off
    assert "leaderboard" not in build_results(three_broken(), leaderboard=True)  # no BLEU, no entry
    item = {"name": "BLEU", "score": 15, "max_score": 20, "extra_data": {"bleu": 63.2}}
    assert grade_module._translation_check(RUBRIC.parts["translation"], item).data == {"bleu": 63.2}


def test_leaderboard_setting_goes_from_course_toml_to_the_autograders_rubric(tmp_path):
    from builders import release
    from grader.course import CourseError

    config = tmp_path / "course.toml"
    config.write_text('[course]\nname = "x"\n\n[gradescope]\nleaderboard = true\n', encoding="utf-8")
    course = release.load_course(config)
    assert course.leaderboard is True and release.load_course(None).leaderboard is False
    rubric = tmp_path / "rubric.toml"
    rubric.write_text(release.render_rubric(course), encoding="utf-8")
    assert load_rubric(rubric).leaderboard is True
    rubric.write_text(release.render_rubric(dataclasses.replace(course, leaderboard=False)), encoding="utf-8")
    assert load_rubric(rubric).leaderboard is False
    config.write_text('[gradescope]\nleaderboard = "yes"\n', encoding="utf-8")
    with pytest.raises(CourseError):
        release.load_course(config)


def broken_submission(folder: Path) -> Path:
    """The reference with masks inverted (a bug), the embedding stub, and F.scaled_dot_product_attention."""
    package = folder / "transformer"
    shutil.copytree(ROOT / "solutions" / "transformer", package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "assignments" / "transformer" / "embedding.py", package / "embedding.py")
    masks = package / "masks.py"
    masks.write_text(masks.read_text().replace("(tokens != pad_id)", "(tokens == pad_id)"))
    attention = package / "attention.py"
    text = attention.read_text()
    assert "    return weights @ value, weights\n" in text
    attention.write_text(
        text.replace(
            "    return weights @ value, weights\n",
            "    return torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask), weights\n",
            1,
        )
    )
    return folder


def test_a_real_grade_of_three_broken_parts(tmp_path):
    """End to end: the live lines agree with the table, the ban is flagged once, report < 25 KB."""
    submission = broken_submission(tmp_path / "student")
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "grader",
            "grade",
            str(submission),
            "--out",
            str(tmp_path / "out"),
            "--parts",
            "masks,attention,embedding",
            "--no-train",
            "--no-lock-repo",
            "--lang",
            "en",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    report = (tmp_path / "out" / "report.md").read_text()
    jsonschema.validate(results, SCHEMA)
    assert len(report.encode()) < 25_000
    verdicts = {name: info["verdict"] for name, info in results["extra_data"]["parts"].items()}
    assert verdicts == {"masks": "lost_points", "attention": "banned", "embedding": "not_attempted"}
    bans = [f for f in results["extra_data"]["flags"] if "scaled_dot_product_attention" in f]
    assert len(bans) == 1 and "attention.py:" in bans[0], results["extra_data"]["flags"]
    assert report.count("scaled_dot_product_attention in transformer/attention.py") == 1
    for name in verdicts:
        live = [line.strip() for line in run.stderr.splitlines() if line.strip().startswith(f"{name}: ")][-1]
        row = next(line for line in run.stdout.splitlines() if line.startswith(name + " "))
        fraction, score = re.search(r"(\d+/\d+) checks pass, ([\d.]+)/", live).groups()
        assert row.split()[1] == fraction and row.split()[2].startswith(score + "/"), (live, row)
    assert round(sum(t["max_score"] for t in results["tests"]), 2) == results["extra_data"]["max_score"] == 30
