"""The rubric is consistent: every test file it names exists, the points add up."""

from pathlib import Path

import pytest

from grader.rubric import RUBRIC_PATH, RubricError, load_rubric

ROOT = Path(__file__).resolve().parents[2]


def test_every_part_but_translation_has_public_and_hidden_tests_that_exist():
    rubric = load_rubric()
    for name, part in rubric.parts.items():
        if name == "translation":
            continue
        assert any(t.startswith("tests/public/") for t in part.tests), name
        assert any(t.startswith("tests/hidden/") for t in part.tests), name
        assert all((ROOT / t).is_file() for t in part.tests), name


def test_a_missing_test_file_is_an_error_at_load_time(tmp_path):
    (tmp_path / "grader").mkdir()
    text = RUBRIC_PATH.read_text(encoding="utf-8").replace(
        "tests/hidden/test_masks_hidden.py", "tests/hidden/test_masks_hiden.py"
    )
    (tmp_path / "grader" / "rubric.toml").write_text(text, encoding="utf-8")
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    with pytest.raises(RubricError, match="test_masks_hiden.py"):
        load_rubric(tmp_path / "grader" / "rubric.toml")
