"""``python -m grader export moodle|canvas`` and the gradebook's maxima row.

Fixtures, built from the LMSs' documented layouts (a class of four with Japanese names: one
reference submission, one late stub, one student who handed in two files, one who handed in
nothing): the grading worksheet as Moodle downloads it and Canvas's gradebook export live in
tests/selftest/lms/; the download zips are built here from solutions/ and assignments/ (no copy
of the reference in the repository). Graded with ``--parts masks --no-train``: a few seconds each.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import pytest

from grader import grade_all
from grader.__main__ import main as grader_main
from grader.export import CANVAS_ENTRY, MOODLE_ENTRY, canvas_students, moodle_students, points

ROOT = Path(__file__).resolve().parents[2]
LMS = Path(__file__).with_name("lms")
MASKS = ROOT / "tests" / "public" / "test_masks.py"
OPTIONS = ["--parts", "masks", "--no-train", "--no-lock-repo", "--jobs", "2", "--lang", "en"]


def package_zip(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted((ROOT / source / "transformer").glob("*.py")):
            zf.write(path, f"transformer/{path.name}")
    return buffer.getvalue()


def moodle_download(path: Path) -> None:
    """Moodle >= 3.1, 'Download all submissions': a folder per participant and submission plugin."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("山田 太郎_1201_assignsubmission_file_/transformer.zip", package_zip("solutions"))
        for file in sorted((ROOT / "assignments" / "transformer").glob("*.py")):  # late, unzipped stubs
            zf.write(file, f"佐藤 花子_1202_assignsubmission_file_/transformer/{file.name}")
        zf.writestr("Lee Min-jun_1203_assignsubmission_file_/transformer.zip", package_zip("solutions"))
        zf.writestr("Lee Min-jun_1203_assignsubmission_file_/memo.txt", "two files: the zip and this memo\n")
        zf.writestr("Lee Min-jun_1203_assignsubmission_onlinetext_/onlinetext.html", "<p>hello</p>")
        # 鈴木 一郎 (1204): no submission, so no folder.


def canvas_download(path: Path) -> None:
    """Canvas 'Download Submissions': login[_late]_userid_submissionid_filename, flat."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("山田太郎_31_9001_transformer.zip", package_zip("solutions"))
        zf.writestr("satohanako_late_32_9002_transformer.zip", package_zip("assignments"))
        zf.writestr("leeminjun_33_9003_transformer.zip", package_zip("solutions"))
        zf.writestr("leeminjun_33_9004_memo.txt", "two files\n")
        # 鈴木 一郎 (34): no submission.


@pytest.fixture(autouse=True)
def _quiet_workers(monkeypatch):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "ci")
    if not MASKS.exists():
        pytest.skip("no tests for masks")


def test_file_names_of_both_lms_are_parsed():
    entry = MOODLE_ENTRY.match("Anna_Maria Rossi_77_assignsubmission_file_")
    assert (entry["name"], entry["id"], entry["plugin"]) == ("Anna_Maria Rossi", "77", "assignsubmission_file")
    late = CANVAS_ENTRY.match("satohanako_late_32_9002_my_transformer.zip")
    assert (late["login"], late["late"], late["id"], late["sub"], late["file"]) == (
        "satohanako",
        "late",
        "32",
        "9002",
        "my_transformer.zip",
    )
    assert CANVAS_ENTRY.match("山田太郎_31_9001_transformer.zip")["id"] == "31"
    assert [points(x) for x in (24.6294, 80.0, 79.9974, 0.005, 41.7)] == ["24.63", "80", "80", "0.01", "41.7"]


def test_the_downloads_map_to_one_student_each(tmp_path):
    (tmp_path / "m").mkdir()
    with zipfile.ZipFile(_build(tmp_path, moodle_download)) as zf:
        zf.extractall(tmp_path / "m")
    students = moodle_students(tmp_path / "m")
    assert sorted(students) == ["1201", "1202", "1203"]
    assert [name for name, _path in students["1203"].files] == ["memo.txt", "transformer.zip"]  # not the online text
    assert students["1201"].name == "山田 太郎"
    (tmp_path / "c").mkdir()
    with zipfile.ZipFile(_build(tmp_path, canvas_download)) as zf:
        zf.extractall(tmp_path / "c")
    students = canvas_students(tmp_path / "c")
    assert sorted(students) == ["31", "32", "33"] and students["32"].late and not students["31"].late
    assert len(students["33"].files) == 2


def _build(tmp_path: Path, maker) -> Path:
    path = tmp_path / f"{maker.__name__}.zip"
    maker(path)
    return path


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.reader(f))


def test_moodle_round_trip(tmp_path, capsys):
    out = tmp_path / "out"
    status = grader_main(
        [
            "export",
            "moodle",
            str(_build(tmp_path, moodle_download)),
            "--out",
            str(out),
            "--worksheet",
            str(LMS / "moodle-grading-worksheet.csv"),
            *OPTIONS,
        ]
    )
    printed = capsys.readouterr().out
    assert status == 0, printed
    rows = read_csv(out / "moodle-grading-worksheet.csv")
    original = read_csv(LMS / "moodle-grading-worksheet.csv")
    assert rows[0] == original[0]  # Moodle finds its columns by these names
    assert (out / "moodle-grading-worksheet.csv").read_bytes().startswith(b"\xef\xbb\xbf")  # as downloaded
    by_id = {row[0]: dict(zip(rows[0], row)) for row in rows[1:]}
    assert by_id["Participant 1201"]["Grade"] == "6"
    assert by_id["Participant 1202"]["Grade"] == "0"  # late stubs
    assert by_id["Participant 1203"]["Grade"] == "6"  # the zip beside a memo
    assert by_id["Participant 1204"]["Grade"] == "" and by_id["Participant 1204"]["Feedback comments"] == ""
    assert by_id["Participant 1201"]["Feedback comments"].startswith("6 of 6 points.")
    for key in ("Full name", "Status", "Last modified (grade)"):  # untouched
        assert [r[key] for r in by_id.values()] == [dict(zip(original[0], r))[key] for r in original[1:]]
    with zipfile.ZipFile(out / "moodle-feedback-files.zip") as zf:
        names = sorted(zf.namelist())
        assert names == [
            "Lee Min-jun_1203_assignfeedback_file_/report.md",
            "佐藤 花子_1202_assignfeedback_file_/report.md",
            "山田 太郎_1201_assignfeedback_file_/report.md",
        ]
        assert zf.read(names[2]) == (out / "grades" / "participant-1201" / "report.md").read_bytes()
    summary = json.loads((out / "export-summary.json").read_text())
    assert summary == {"graded": 3, "failed to grade": [], "no submission": ["1204"], "flagged": [], "late": ["1202"]}
    assert "maximum grade is 100.00" in printed  # out of 6 here (only masks), Moodle says 100


def test_canvas_round_trip(tmp_path, capsys):
    out = tmp_path / "out"
    status = grader_main(
        [
            "export",
            "canvas",
            str(_build(tmp_path, canvas_download)),
            "--out",
            str(out),
            "--assignment",
            "Transformer (4242)",
            "--roster",
            str(LMS / "canvas-gradebook-export.csv"),
            *OPTIONS,
        ]
    )
    printed = capsys.readouterr().out
    assert status == 0, printed
    rows = read_csv(out / "canvas-gradebook-import.csv")
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Transformer (4242)"]
    assert rows[1:] == [
        ["山田, 太郎", "31", "s2026001", "taro.yamada", "深層学習 2026", "6"],
        ["佐藤, 花子", "32", "s2026002", "hanako.sato", "深層学習 2026", "0"],
        ["Lee, Min-jun", "33", "s2026003", "minjun.lee", "深層学習 2026", "6"],
        ["鈴木, 一郎", "34", "s2026004", "ichiro.suzuki", "深層学習 2026", ""],
    ]
    summary = json.loads((out / "export-summary.json").read_text())
    assert summary["no submission"] == ["34"] and summary["late"] == ["32"] and summary["graded"] == 3


def test_the_gradebook_has_a_maxima_row_and_rounded_points(tmp_path):
    rows = [
        {"student": "alice", "total": 18.6294, "parts": {"masks": 6.0, "attention": 12.6294}, "flags": []},
        {"student": "bob", "total": 6.0, "parts": {"masks": 6.0}, "flags": ["banned: F.softmax"]},
        {"student": "carol", "total": "", "parts": {}, "flags": ["grader-error: boom"]},
    ]
    path = tmp_path / "gradebook.csv"
    grade_all.write_gradebook(path, rows, ["masks", "attention", "translation"])
    table = read_csv(path)
    assert table[0] == ["student", "total", "masks", "attention", "flags"]  # translation: nobody graded on it
    assert table[1] == [grade_all.MAXIMA_ROW, "22", "6", "16", ""]
    assert table[2] == ["alice", "18.63", "6", "12.63", ""]
    assert table[3] == ["bob", "6", "6", "not graded", "banned: F.softmax"]
    assert table[4] == ["carol", "", "", "", "grader-error: boom"]
