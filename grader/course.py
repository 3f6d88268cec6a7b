"""The course's settings (``course.toml``): what the hand-outs are built from, and the two
settings the grader itself reads when grading in the repository (``[course] language`` and
``[gradescope] leaderboard``, see ``grader/grade.py``).

A hand-out carries no course.toml: the Gradescope autograder gets the language as ``--lang``
and the leaderboard in its rubric (``builders/release.py``); without the file, the defaults.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from grader.i18n import available_languages

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "course.toml"


class CourseError(ValueError):
    """course.toml names an unknown setting or gives one a value it cannot have."""


@dataclass(frozen=True)
class Course:
    name: str = "The Transformer assignment"
    due: str = "(see the course page)"
    submission_site: str = "Gradescope"
    contact: str = ""
    release_name: str = "transformer-assignment"
    points: dict[str, float] = field(default_factory=dict)
    grade_args: tuple[str, ...] = ()  # extra options of `python -m grader grade` on Gradescope
    language: str = "en"  # what students read when graded: report.md, results.json (en, ja)
    leaderboard: bool = False  # [gradescope] leaderboard: the translation's BLEU on Gradescope's leaderboard


def load_course(path: Path | None = DEFAULT_CONFIG) -> Course:
    """Read ``course.toml``; a missing file gives the defaults."""
    if path is None or not Path(path).is_file():
        if path is not None and Path(path) != DEFAULT_CONFIG:
            raise CourseError(f"course config {path} does not exist")
        return Course()
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    course = raw.get("course", {})
    points = raw.get("rubric", {}).get("points", {})
    grade_args = raw.get("autograder", {}).get("grade_args", [])
    known = {f for f in Course.__dataclass_fields__ if f not in ("points", "grade_args", "leaderboard")}
    unknown = sorted(set(course) - known)
    if unknown:
        raise CourseError(f"{path}: unknown [course] keys {unknown} (known: {sorted(known)})")
    for part, value in points.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise CourseError(f"{path}: [rubric.points] {part} = {value!r} is not a number >= 0")
    if not isinstance(grade_args, list) or not all(isinstance(a, str) for a in grade_args):
        raise CourseError(f"{path}: [autograder] grade_args must be a list of strings")
    if "language" in course and course["language"] not in available_languages():
        raise CourseError(f"{path}: [course] language = {course['language']!r} (known: {available_languages()})")
    leaderboard = raw.get("gradescope", {}).get("leaderboard", False)
    if not isinstance(leaderboard, bool):
        raise CourseError(f"{path}: [gradescope] leaderboard must be true or false")
    return Course(
        **{k: str(v) for k, v in course.items()},
        points={k: float(v) for k, v in points.items()},
        grade_args=tuple(grade_args),
        leaderboard=leaderboard,
    )
