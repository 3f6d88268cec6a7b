"""Does the student SEE the bug? Measured on `make check`'s own output for every mutant.

    python -m tests.selftest.mutants.seen [--lang en|ja] [--only ID,ID] [--jobs N] [--json FILE]
                                          [--legacy]

For each mutant of the catalogue, applied to a copy of ``solutions/``, this runs the command a
student runs, ``make check PART=<part>`` (``python -m tests.support.feedback <part>``), and reads:

* the table row of the mutated part (the part's line and the lines wrapped under it): does it
  name the bug (the mutant's ``hint``, or ``hint_ja`` in Japanese)?
* the part's output: does it name the bug in its first 60 lines, and is it at most 150 lines?

"Names the bug" is strict: the phrase must be in what the student reads AND in the core of the
diagnosis (the bug recognised, or the problem stated) — not merely in the name of the quantity
checked or in the hint, where a short phrase like "mask" could stand by chance. White space is
ignored in the comparison (a phrase may be wrapped onto the next line).
``--legacy`` measures the output of the checkout as it was before the diagnosis-first table
(``pytest --part-summary``, the table cut at 120 characters), for before/after figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.selftest.mutants.catalogue import MUTANTS, Mutant
from tests.selftest.mutants.run import apply

ROOT = Path(__file__).resolve().parents[3]
FIRST_LINES = 60
MAX_LINES = 150
ROW = re.compile(r"^(?P<part>[a-z_]+)\s+\d+/\d+\s+[\d.]+/[\d.]+\s+(?P<text>.*)$")


@dataclass
class Seen:
    id: str
    part: str
    lang: str
    table_row: str
    table_names_bug: bool
    part_lines: int
    part_names_bug_early: bool

    @property
    def part_ok(self) -> bool:
        return self.part_names_bug_early and self.part_lines <= MAX_LINES


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def table_row(output: str, part: str) -> str:
    """The part's row of the table, with the lines wrapped under it."""
    lines = output.splitlines()
    row, taking = [], False
    for line in lines:
        match = ROW.match(line)
        if match:
            taking = match["part"] == part
            if taking:
                row.append(match["text"])
            continue
        if taking and line.startswith(" " * 20) and line.strip():
            row.append(line.strip())
        else:
            taking = False
    return " ".join(row)


def first_problem(results: Path, part: str) -> str:
    """The core of the diagnosis the table shows for ``part`` (see ``feedback.first_failure``)."""
    if not results.exists():
        return ""
    records = json.loads(results.read_text(encoding="utf-8")).get(part, [])
    failed = [r["diagnosis"] for r in records if not r["passed"] and r["diagnosis"]]
    first = next((d for kind in ("syntax", "import") for d in failed if d["kind"] == kind), None)
    first = first or (failed[0] if failed else None)
    return first["problem"] if first else ""


def run(command: list[str], lang: str) -> str:
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "COURSE_LANGUAGE": lang, "COLUMNS": "100"}
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    return result.stdout + result.stderr


def measure(mutant: Mutant, lang: str, legacy: bool = False) -> Seen:
    phrase = mutant.hint_ja if lang == "ja" else mutant.hint
    with tempfile.TemporaryDirectory(prefix=f"seen-{mutant.id}-") as tmp:
        apply(mutant, Path(tmp))
        part = mutant.owner
        if legacy:
            test = f"tests/public/test_{part}.py"
            base = [sys.executable, "-m", "pytest", test, "--impl", tmp, "-p", "no:cacheprovider", "--part-summary"]
            table_out = run(base + ["-q", "--tb=no", "--no-header", "-p", "no:warnings"], lang)
            full = table_row(table_out, part)
            row = full[:120]  # the old table cut the text at 120 characters
            part_out = run(base, lang)
            # the old diagnosis: after "likely bug", else the headline after the last ": "
            core = full.split("likely bug", 1)[1] if "likely bug" in full else full.rsplit(": ", 1)[-1]
        else:
            results = Path(tmp) / "results.json"
            part_out = run(
                [
                    sys.executable,
                    "-m",
                    "tests.support.feedback",
                    part,
                    "--impl",
                    tmp,
                    "--part-results-json",
                    str(results),
                ],
                lang,
            )
            row = table_row(part_out, part)
            core = first_problem(results, part)
    lines = part_out.splitlines()
    in_core = bool(phrase) and squash(phrase) in squash(core)
    named = in_core and squash(phrase) in squash(row)
    early = in_core and squash(phrase) in squash("\n".join(lines[:FIRST_LINES]))
    return Seen(mutant.id, part, lang, row, named, len(lines), early)


def report(results: list[Seen]) -> str:
    out = [f"{'mutant':<34} {'table':<6} {'part':<10} table row"]
    for s in results:
        part = f"{'yes' if s.part_names_bug_early else 'no'}/{s.part_lines}"
        out.append(f"{s.id:<34} {'yes' if s.table_names_bug else 'no':<6} {part:<10} {s.table_row[:150]}")
    n = len(results)
    table = sum(s.table_names_bug for s in results)
    part = sum(s.part_ok for s in results)
    out += [
        "",
        f"table row names the bug: {table}/{n} = {100 * table / n:.0f}%",
        f"part output names it in its first {FIRST_LINES} lines, within {MAX_LINES} lines: "
        f"{part}/{n} = {100 * part / n:.0f}%",
    ]
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lang", default="en", choices=("en", "ja"))
    parser.add_argument("--only", default="")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", default=None)
    parser.add_argument("--legacy", action="store_true")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.only or m.id in args.only.split(",")]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda m: measure(m, args.lang, args.legacy), chosen))
    print(report(results))
    if args.json:
        Path(args.json).write_text(
            json.dumps([asdict(s) for s in results], indent=1, ensure_ascii=False), encoding="utf-8"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
