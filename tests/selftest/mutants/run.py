"""Grade every mutant of the catalogue with the test suite and print the kill table.

    python -m tests.selftest.mutants.run [--jobs N] [--only ID,ID] [--json out.json]

For each mutant: copy solutions/transformer to a temporary folder, apply the edit, run the
public tests of the mutated part and of every part that builds on it (then, only if none of
them failed, the hidden ones), and record which parts lost points and the first feedback line. Components only,
no training. Each run is its own pytest process (one `transformer` package per process).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from grader.rubric import load_rubric
from tests.selftest.mutants.catalogue import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Outcome:
    mutant: Mutant
    public_failed: dict[str, int] = field(default_factory=dict)  # part -> failed public tests
    hidden_failed: dict[str, int] = field(default_factory=dict)
    first_message: str = ""
    error: str = ""

    @property
    def killed_by_public(self) -> bool:
        return any(self.public_failed.values())

    @property
    def killed(self) -> bool:
        return self.killed_by_public or any(self.hidden_failed.values())

    @property
    def diagnosis(self) -> str:
        """What the first line says is wrong: after "likely bug", else the headline at its end."""
        from grader.i18n import _

        line = self.first_message
        marker = _("likely bug — {bug}", bug="").split("—")[0].strip()  # "likely bug", "バグの可能性"
        return line.split(marker, 1)[1] if marker in line else line.rsplit(": ", 1)[-1]

    @property
    def hinted(self) -> bool:
        """The diagnosis names the bug, in the language of the run (``COURSE_LANGUAGE``)."""
        from grader.i18n import language

        phrase = self.mutant.hint_ja if language() == "ja" else self.mutant.hint
        return bool(phrase) and phrase.lower() in self.diagnosis.lower()

    @property
    def parts_lost(self) -> list[str]:
        failed = list(self.public_failed.items()) + list(self.hidden_failed.items())
        return sorted({part for part, count in failed if count})


def affected_parts(part: str) -> list[str]:
    """The mutated part and every part that (transitively) builds on it, in rubric order."""
    rubric = load_rubric()
    affected = {part}
    changed = True
    while changed:
        changed = False
        for p in rubric.parts.values():
            if p.name not in affected and affected & set(p.depends_on):
                affected.add(p.name)
                changed = True
    return [p for p in rubric.parts if p in affected and rubric.parts[p].tests]


def apply(mutant: Mutant, target: Path) -> None:
    shutil.copytree(ROOT / "solutions" / "transformer", target / "transformer")
    path = target / "transformer" / f"{mutant.module}.py"
    source = path.read_text(encoding="utf-8")
    if source.count(mutant.find) != 1:
        raise ValueError(f"mutant {mutant.id}: the edit does not apply exactly once to {mutant.module}.py")
    path.write_text(source.replace(mutant.find, mutant.replace), encoding="utf-8")


def run_pytest(files: list[str], impl: Path, results: Path) -> dict:
    files = [f for f in files if (ROOT / f).exists()]
    if not files:
        return {}
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *files,
            "--impl",
            str(impl),
            "-q",
            "--tb=no",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:warnings",
            "--part-results-json",
            str(results),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    return json.loads(results.read_text()) if results.exists() else {}


def first_line(message: str) -> str:
    line = message.strip().splitlines()[0] if message.strip() else ""
    return line.removeprefix("AssertionError: ")


def grade_mutant(mutant: Mutant, dependents: bool = True) -> Outcome:
    """Grade one mutant; ``dependents=False`` runs the mutated part's own tests only (faster)."""
    rubric = load_rubric()
    outcome = Outcome(mutant)
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.id}-") as tmp:
        tmp = Path(tmp)
        try:
            apply(mutant, tmp)
        except ValueError as error:
            outcome.error = str(error)
            return outcome
        parts = affected_parts(mutant.owner) if dependents else [mutant.owner]
        for kind, store in (("public", outcome.public_failed), ("hidden", outcome.hidden_failed)):
            if kind == "hidden" and outcome.killed_by_public:
                break  # already killed: the hidden run would only add time
            files = [t for p in parts for t in rubric.parts[p].tests if f"/{kind}/" in t]
            results = run_pytest(files, tmp, tmp / f"{kind}.json")
            for part, tests in results.items():
                store[part] = sum(not t["passed"] for t in tests)
                if not outcome.first_message and part == mutant.owner:
                    outcome.first_message = next((first_line(t["message"]) for t in tests if not t["passed"]), "")
            if not outcome.first_message:
                outcome.first_message = next(
                    (first_line(t["message"]) for tests in results.values() for t in tests if not t["passed"]), ""
                )
    return outcome


def report(outcomes: list[Outcome]) -> str:
    lines = [f"{'mutant':<34} {'public':<7} {'parts that lost points':<40} first feedback line"]
    for o in outcomes:
        status = "ERROR" if o.error else ("killed" if o.killed_by_public else ("hidden" if o.killed else "SURVIVED"))
        lines.append(f"{o.mutant.id:<34} {status:<7} {','.join(o.parts_lost):<40} {(o.error or o.first_message)[:110]}")
    n = len(outcomes)
    killed = sum(o.killed for o in outcomes)
    public = sum(o.killed_by_public for o in outcomes)
    hinted = sum(o.hinted for o in outcomes)
    lines += [
        "",
        f"kill rate: {killed}/{n} = {100 * killed / n:.0f}% (public + hidden); "
        f"{public}/{n} = {100 * public / n:.0f}% with the public tests alone",
        f"hint rate: {hinted}/{n} = {100 * hinted / n:.0f}% of first feedback lines name the actual bug",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--only", default="", help="comma-separated mutant ids")
    parser.add_argument("--json", default=None, help="also write the outcomes to this file")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.only or m.id in args.only.split(",")]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        outcomes = list(pool.map(grade_mutant, chosen))
    print(report(outcomes))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                [
                    {
                        "id": o.mutant.id,
                        "part": o.mutant.owner,
                        "killed": o.killed,
                        "killed_by_public": o.killed_by_public,
                        "hinted": o.hinted,
                        "parts_lost": o.parts_lost,
                        "first_message": o.first_message,
                        "error": o.error,
                    }
                    for o in outcomes
                ],
                indent=1,
                ensure_ascii=False,
            ),
            encoding="utf-8",
        )
    return 0 if all(o.killed and not o.error for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
