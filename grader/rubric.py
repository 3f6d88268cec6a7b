"""Read and check the rubric (``grader/rubric.toml``)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

RUBRIC_PATH = Path(__file__).with_name("rubric.toml")


class RubricError(ValueError):
    """The rubric file is inconsistent (unknown dependency, points not adding up, ...)."""


@dataclass(frozen=True)
class Part:
    name: str
    title: str
    points: float
    tests: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    bleu_thresholds: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class Rubric:
    total: float
    parts: dict[str, Part] = field(default_factory=dict)
    # Gradescope's leaderboard shows the translation's BLEU (``[gradescope] leaderboard = true``;
    # the autograder's rubric carries course.toml's setting, see builders/release.py).
    leaderboard: bool = False

    def part_of_test_file(self, path: str) -> str | None:
        """The part a test file belongs to, from its path relative to the repository root."""
        path = path.replace("\\", "/")
        for part in self.parts.values():
            if any(path == t or path.endswith("/" + t) for t in part.tests):
                return part.name
        return None


def load_rubric(path: Path = RUBRIC_PATH) -> Rubric:
    """Read a rubric. One that sits in a ``grader/`` folder (the repository's, a hand-out's)
    must name only test files that exist beside that folder: a missing file is an error,
    never a part that silently loses its checks."""
    path = Path(path)
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    parts = {}
    for name, spec in raw.get("parts", {}).items():
        parts[name] = Part(
            name=name,
            title=spec.get("title", name),
            points=float(spec["points"]),
            tests=tuple(spec.get("tests", ())),
            depends_on=tuple(spec.get("depends_on", ())),
            bleu_thresholds=tuple((float(b), float(p)) for b, p in spec.get("bleu_thresholds", ())),
        )
    leaderboard = raw.get("gradescope", {}).get("leaderboard", False)
    if not isinstance(leaderboard, bool):
        raise RubricError(f"[gradescope] leaderboard = {leaderboard!r} is not true or false")
    rubric = Rubric(total=float(raw["total"]), parts=parts, leaderboard=leaderboard)
    for part in parts.values():
        unknown = [d for d in part.depends_on if d not in parts]
        if unknown:
            raise RubricError(f"part {part.name!r} depends on unknown parts {unknown}")
        if part.bleu_thresholds and max(p for _, p in part.bleu_thresholds) > part.points:
            raise RubricError(f"part {part.name!r}: a BLEU threshold awards more than the part's points")
    if path.resolve().parent.name == "grader":
        root = path.resolve().parent.parent
        missing = [t for part in parts.values() for t in part.tests if not (root / t).is_file()]
        if missing:
            raise RubricError(f"{path}: the rubric names test files that do not exist: {', '.join(missing)}")
    if abs(sum(p.points for p in parts.values()) - rubric.total) > 1e-9:
        raise RubricError(f"the parts add up to {sum(p.points for p in parts.values())}, not total = {rubric.total}")
    return rubric
