"""What a grade produces: ``results.json`` (Gradescope's format), ``report.md``, a terminal table.

The judge writes these itself, after every worker is dead, into a directory no worker can
write (see ``grader/sandbox/process.py``). Student-controlled text (exception messages) only
ever appears inside JSON strings or fenced code blocks, never as markdown or HTML.

Authenticity: ``extra_data.authenticity`` holds a random per-run ``nonce`` (made by the judge,
never sent to a worker) and ``sha256``, the hash of the nonce followed by the canonical JSON of
the results without the ``authenticity`` entry. ``grade`` prints both on its last line;
``grade-all`` reads them from the judge's stdout (a pipe no worker can write) and checks the
file against them, so a results.json that was replaced or edited after the judge wrote it is
caught. On its own, the hash only detects accidental changes: anyone able to rewrite the file
can recompute it — the protection is that no worker can write it (and is dead when it is
written), the nonce/hash pair says which run wrote it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

MAX_OUTPUT_CHARS = 6000


@dataclass
class Check:
    """One check (test) as the student sees it."""

    part: str
    name: str  # "<part>: <what was checked>"
    passed: bool
    output: str = ""
    hidden: bool = False
    max_score: float = 0.0
    score: float = 0.0
    report_md: str = ""  # extra markdown for report.md (training curves, samples, ...)
    picture: str = ""  # an image file in the output directory, shown in report.md


@dataclass
class PartResult:
    name: str
    title: str
    points: float
    status: str = "graded"  # "graded" | "error" | "not graded"
    checks: list[Check] = field(default_factory=list)
    message: str = ""  # why a part was not (fully) graded
    note: str = ""  # "Note: part `attention` also lost points; ..."
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0
    grader_error: str = ""  # for the instructor (flags), not shown on the checks
    requests: int = 0  # calls into the sandbox (for the timings)

    @property
    def score(self) -> float:
        return sum(c.score for c in self.checks)

    @property
    def max_score(self) -> float:
        return sum(c.max_score for c in self.checks)


@dataclass
class GradeResult:
    submission: str
    parts: list[PartResult] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)  # part -> why it is not in the score
    flags: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    sandbox: dict = field(default_factory=dict)
    execution_time: float = 0.0
    nonce: str = ""
    rejected: str = ""  # why the submission could not be taken in at all

    @property
    def score(self) -> float:
        return sum(p.score for p in self.parts)

    @property
    def max_score(self) -> float:
        return sum(p.max_score for p in self.parts)


def _r(x: float) -> float:
    return round(float(x), 4)


def _clip(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 30] + "\n… (message shortened)"


# --- terminal table --------------------------------------------------------------------------


def parts_table(grade: GradeResult) -> str:
    lines = [f"{'part':<14} {'checks':>9} {'points':>13}   status"]
    for part in grade.parts:
        checks = [c for c in part.checks if c.max_score > 0]
        status = part.message or ("all checks pass" if part.score >= part.max_score - 1e-9 else "lost points")
        if part.violations:
            status = "0 points: banned call (see flags)"
        lines.append(f"{part.name:<14} {sum(c.passed for c in checks):>4}/{len(checks):<4} "
                     f"{part.score:>6.1f}/{part.max_score:<6g}   {status}")
    lines.append(f"{'total':<14} {'':>9} {grade.score:>6.1f}/{grade.max_score:<6g}")
    for name, why in grade.left_out.items():
        lines.append(f"(not in this grade: {name} — {why})")
    return "\n".join(lines)


def summary_text(grade: GradeResult) -> str:
    """The top-level ``output`` of results.json."""
    lines = []
    if grade.rejected:
        lines += [f"Your submission could not be graded: {grade.rejected}", ""]
    lines.append(parts_table(grade))
    if grade.flags:
        lines += ["", "Flags:"] + [f"  - {f}" for f in grade.flags]
    if grade.warnings:
        lines += ["", "Notes on your submission:"] + [f"  - {w}" for w in grade.warnings]
    return "\n".join(lines)


# --- results.json ----------------------------------------------------------------------------


def canonical_json(data) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def seal(results: dict, nonce: str) -> dict:
    """Add ``extra_data.authenticity`` (see the module docstring)."""
    body = json.loads(json.dumps(results))
    body["extra_data"].pop("authenticity", None)
    digest = hashlib.sha256((nonce + canonical_json(body)).encode()).hexdigest()
    results["extra_data"]["authenticity"] = {"nonce": nonce, "sha256": digest}
    return results


def verify(results: dict, nonce: str | None = None, sha256: str | None = None) -> bool:
    """Does ``results`` carry a consistent seal (and, if given, this nonce and hash)?"""
    try:
        seal_data = results["extra_data"]["authenticity"]
        body = json.loads(json.dumps(results))
        body["extra_data"].pop("authenticity")
        digest = hashlib.sha256((seal_data["nonce"] + canonical_json(body)).encode()).hexdigest()
    except (KeyError, TypeError):
        return False
    return (digest == seal_data["sha256"] and (nonce is None or nonce == seal_data["nonce"])
            and (sha256 is None or sha256 == digest))


def build_results(grade: GradeResult) -> dict:
    tests = []
    for part in grade.parts:
        for check in part.checks:
            tests.append({
                "name": check.name,
                "score": _r(check.score),
                "max_score": _r(check.max_score),
                "status": "passed" if check.passed else "failed",
                "output": _clip(check.output),
                "output_format": "text",
                "tags": [part.name, "hidden" if check.hidden else "public"],
                "visibility": "after_published" if check.hidden else "visible",
            })
    results = {
        "score": _r(grade.score),
        "execution_time": round(grade.execution_time, 2),
        "output": _clip(summary_text(grade), 20000),
        "output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {
            "submission": grade.submission,
            "max_score": _r(grade.max_score),
            "parts": {
                part.name: {
                    "score": _r(part.score), "max_score": _r(part.max_score), "status": part.status,
                    "checks": len([c for c in part.checks if c.max_score > 0]),
                    "passed": len([c for c in part.checks if c.max_score > 0 and c.passed]),
                    "message": part.message, "note": part.note, "violations": part.violations,
                }
                for part in grade.parts
            },
            "left_out": grade.left_out,
            "flags": grade.flags,
            "warnings": grade.warnings,
            "rejected": grade.rejected,
            "sandbox": grade.sandbox,
            "timings": {"total_s": round(grade.execution_time, 2),
                        "parts_s": {p.name: round(p.seconds, 2) for p in grade.parts},
                        "sandbox_requests": {p.name: p.requests for p in grade.parts}},
        },
    }
    return seal(results, grade.nonce)


# --- report.md -------------------------------------------------------------------------------


def _fence(text: str) -> str:
    """A code block that student text cannot break out of."""
    ticks = "`" * max(3, _longest_backtick_run(text) + 1)
    return f"{ticks}text\n{text}\n{ticks}"


def _longest_backtick_run(text: str) -> int:
    best = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        best = max(best, run)
    return best


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_report(grade: GradeResult) -> str:
    lines = [f"# Grade report: {_md_cell(grade.submission)}", ""]
    if grade.rejected:
        lines += ["**Your submission could not be graded:**", "", _fence(grade.rejected), ""]
    lines += [f"**Total: {grade.score:.1f} / {grade.max_score:g}**", ""]
    lines += ["| part | checks passed | points | |", "|---|---:|---:|---|"]
    for part in grade.parts:
        checks = [c for c in part.checks if c.max_score > 0]
        status = "banned call: 0 points" if part.violations else (part.message or "")
        lines.append(f"| {part.name} — {_md_cell(part.title)} | {sum(c.passed for c in checks)}/{len(checks)} "
                     f"| {part.score:.1f} / {part.max_score:g} | {_md_cell(status)} |")
    lines.append(f"| **total** | | **{grade.score:.1f} / {grade.max_score:g}** | |")
    for name, why in grade.left_out.items():
        lines.append(f"\n_Not in this grade: `{name}` — {why}._")
    lines.append("")
    if grade.flags:
        lines += ["## Flags", ""] + [f"- {_md_cell(f)}" for f in grade.flags] + [""]
    if grade.warnings:
        lines += ["## Notes on the submission", ""] + [f"- {_md_cell(w)}" for w in grade.warnings] + [""]
    failed = [p for p in grade.parts if p.name != "translation" and any(not c.passed for c in p.checks)]
    if failed:
        lines += ["## Failed checks", ""]
        for part in failed:
            lines += [f"### {part.name}", ""]
            if part.note:
                lines += [f"> {part.note}", ""]
            for check in part.checks:
                if check.passed:
                    continue
                hidden = " _(hidden check)_" if check.hidden else ""
                lines += [f"#### {_md_cell(check.name)}{hidden}", "", _fence(_clip(check.output) or "(no message)"), ""]
    training = [(p, c) for p in grade.parts for c in p.checks if p.name == "translation" or c.report_md]
    if training:
        lines += ["## Training and translation", ""]
        for part, check in training:
            if part.note and not check.passed:
                lines += [f"> {part.note}", ""]
            lines += [f"#### {_md_cell(check.name)} — {check.score:g} / {check.max_score:g}", ""]
            lines += [check.report_md or _fence(_clip(check.output) or "(no message)"), ""]
            if check.picture:
                lines += [f"![attention picture]({check.picture})", ""]
    return "\n".join(lines)


def write_outputs(grade: GradeResult, out_dir: Path) -> dict:
    """Write results.json and report.md; return the results dict."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = build_results(grade)
    temporary = out_dir / "results.json.tmp"
    temporary.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    temporary.replace(out_dir / "results.json")  # never a half-written results.json
    (out_dir / "report.md").write_text(render_report(grade), encoding="utf-8")
    return results
