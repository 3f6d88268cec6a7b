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

Language: everything a student reads (``report.md``, each check's ``output``, the top-level
``output``, the terminal table) is in the grading language (``grader.i18n``: ``grade --lang``
or course.toml). ``extra_data`` is for the instructor and for machines (``grade-all``'s
gradebook, Gradescope's API): its flags, notes, part messages and violations stay in English
whatever the language. Texts the grader makes are therefore ``Text``s — a ``str`` in the
grading language that can also be rendered in English. Check *names* stay as the tests name
them (English).
"""
from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from grader.i18n import SOURCE_LANGUAGE, _, in_language, language, translate

MAX_OUTPUT_CHARS = 6000


class Text(str):
    """A grader message: a ``str`` in the current language that can be shown in another one.

    ``Text(N_("part {part} ..."), part=name)``: the msgid must be a literal marked with ``N_``
    (or a msgid known from elsewhere, e.g. a tripwire rule); fields may be ``Text`` too and
    are rendered in the same language. ``render(lang)`` gives the text in ``lang``.
    """

    msgid: str
    fields: dict

    def __new__(cls, msgid: str, /, **fields):
        self = super().__new__(cls, _render(msgid, fields, language()))
        self.msgid = msgid
        self.fields = fields
        return self

    def render(self, lang: str | None = None) -> str:
        return _render(self.msgid, self.fields, lang or language())

    def __reduce__(self):  # copies and pickles stay Texts
        return (_text_from, (self.msgid, self.fields))


def _text_from(msgid: str, fields: dict) -> Text:
    return Text(msgid, **fields)


def _render(msgid: str, fields: dict, lang: str) -> str:
    values = {name: render(value, lang) for name, value in fields.items()}
    return in_language(lang, msgid, **values)


def render(value, lang: str | None = None) -> str:
    """``value`` in ``lang`` (default: the current language) if it is a ``Text``, else as it is."""
    return value.render(lang) if isinstance(value, Text) else str(value)


def english(value) -> str:
    """What ``extra_data`` holds: the English text of a ``Text``, other strings as they are."""
    return render(value, SOURCE_LANGUAGE)


def fallback_results(status) -> dict:
    """What ``run_autograder`` writes when the grader itself failed (in the current language)."""
    return {
        "score": 0,
        "output": _("The autograder could not grade this submission (exit status {status}); this is not "
                    "a verdict on your code. Please contact the course staff.", status=status),
        "tests": [],
    }


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
    message: str = ""  # why a part was not (fully) graded (a Text, or student text)
    note: str = ""  # "Note: part `attention` also lost points; ..." (a Text)
    violations: list[str] = field(default_factory=list)  # Texts
    seconds: float = 0.0
    grader_error: str = ""  # for the instructor (flags), not shown on the checks
    requests: int = 0  # calls into the sandbox (for the timings)
    flags: list[str] = field(default_factory=list)  # Texts for a human (the grade's flags)

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
    flags: list[str] = field(default_factory=list)  # Texts (extra_data: in English)
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
    if len(text) <= limit:
        return text
    return text[: limit - 30] + "\n" + _("… (message shortened)")


# --- terminal table --------------------------------------------------------------------------


def _width(text: str) -> int:
    """Columns ``text`` takes in a terminal (Japanese characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _pad(text: str, width: int, right: bool = False) -> str:
    space = " " * max(0, width - _width(text))
    return space + text if right else text + space


def parts_table(grade: GradeResult) -> str:
    """The per-part table (terminal and the top-level ``output``), in the current language."""
    part_, checks_, points_, status_, total_ = _("part"), _("checks"), _("points"), _("status"), _("total")
    lines = [f"{_pad(part_, 14)} {_pad(checks_, 9, True)} {_pad(points_, 13, True)}   {status_}"]
    for part in grade.parts:
        checks = [c for c in part.checks if c.max_score > 0]
        status = render(part.message) or (_("all checks pass") if part.score >= part.max_score - 1e-9
                                          else _("lost points"))
        if part.violations:
            status = _("0 points: banned call (see flags)")
        lines.append(f"{part.name:<14} {sum(c.passed for c in checks):>4}/{len(checks):<4} "
                     f"{part.score:>6.1f}/{part.max_score:<6g}   {status}")
    lines.append(f"{_pad(total_, 14)} {'':>9} {grade.score:>6.1f}/{grade.max_score:<6g}")
    for name, why in grade.left_out.items():
        lines.append(_("(not in this grade: {part} — {reason})", part=name, reason=render(why)))
    return "\n".join(lines)


def summary_text(grade: GradeResult) -> str:
    """The top-level ``output`` of results.json."""
    lines = []
    if grade.rejected:
        lines += [_("Your submission could not be graded: {reason}", reason=render(grade.rejected)), ""]
    lines.append(parts_table(grade))
    if grade.flags:
        lines += ["", _("Flags:")] + [f"  - {render(f)}" for f in grade.flags]
    if grade.warnings:
        lines += ["", _("Notes on your submission:")] + [f"  - {render(w)}" for w in grade.warnings]
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
                    "message": english(part.message), "note": english(part.note),
                    "violations": [english(v) for v in part.violations],
                }
                for part in grade.parts
            },
            "left_out": {name: english(why) for name, why in grade.left_out.items()},
            "flags": [english(f) for f in grade.flags],
            "warnings": [english(w) for w in grade.warnings],
            "rejected": english(grade.rejected),
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
    """``report.md``, in the current language (check names as the tests give them)."""
    lines = ["# " + _("Grade report: {submission}", submission=_md_cell(grade.submission)), ""]
    if grade.rejected:
        lines += ["**" + _("Your submission could not be graded:") + "**", "", _fence(render(grade.rejected)), ""]
    total = _("Total: {score} / {max_score}", score=f"{grade.score:.1f}", max_score=f"{grade.max_score:g}")
    lines += [f"**{total}**", ""]
    part_, passed_, points_, total_ = _("part"), _("checks passed"), _("points"), _("total")
    lines += [f"| {part_} | {passed_} | {points_} | |", "|---|---:|---:|---|"]
    for part in grade.parts:
        checks = [c for c in part.checks if c.max_score > 0]
        status = _("banned call: 0 points") if part.violations else render(part.message)
        lines.append(f"| {part.name} — {_md_cell(translate(part.title))} | {sum(c.passed for c in checks)}/{len(checks)} "
                     f"| {part.score:.1f} / {part.max_score:g} | {_md_cell(status)} |")
    lines.append(f"| **{total_}** | | **{grade.score:.1f} / {grade.max_score:g}** | |")
    for name, why in grade.left_out.items():
        text = _("Not in this grade: `{part}` — {reason}.", part=name, reason=_md_cell(render(why)))
        lines.append(f"\n_{text}_")
    lines.append("")
    if grade.flags:
        lines += ["## " + _("Flags"), ""] + [f"- {_md_cell(render(f))}" for f in grade.flags] + [""]
    if grade.warnings:
        lines += ["## " + _("Notes on the submission"), ""]
        lines += [f"- {_md_cell(render(w))}" for w in grade.warnings] + [""]
    no_message = _("(no message)")
    failed = [p for p in grade.parts if p.name != "translation" and any(not c.passed for c in p.checks)]
    if failed:
        lines += ["## " + _("Failed checks"), ""]
        for part in failed:
            lines += [f"### {part.name}", ""]
            if part.note:
                lines += [f"> {render(part.note)}", ""]
            for check in part.checks:
                if check.passed:
                    continue
                hidden = " _" + _("(hidden check)") + "_" if check.hidden else ""
                lines += [f"#### {_md_cell(check.name)}{hidden}", "", _fence(_clip(check.output) or no_message), ""]
    training = [(p, c) for p in grade.parts for c in p.checks if p.name == "translation" or c.report_md]
    if training:
        lines += ["## " + _("Training and translation"), ""]
        for part, check in training:
            if part.note and not check.passed:
                lines += [f"> {render(part.note)}", ""]
            lines += [f"#### {_md_cell(check.name)} — {check.score:g} / {check.max_score:g}", ""]
            lines += [check.report_md or _fence(_clip(check.output) or no_message), ""]
            if check.picture:
                alt = _("attention picture")
                lines += [f"![{alt}]({check.picture})", ""]
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
