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

from grader.i18n import N_, SOURCE_LANGUAGE, _, in_language, language, translate

MAX_OUTPUT_CHARS = 6000
DECIMALS = 2  # points are whole cents: check shares, part scores and totals (results.json and report)
MAX_NAMES_LISTED = 12  # a collapsed entry of report.md names at most this many checks

# A part's verdict (report.md, the table, the live progress line), from its checks.
VERDICTS = {
    "complete": N_("complete"),
    "not_attempted": N_("not attempted"),
    "lost_points": N_("lost points"),
    "banned": N_("banned"),
    "not_graded": N_("not graded"),
}
# hypothesis's note on the input that fails (grader/grade.py HYPOTHESIS_NOTES): a per-check
# detail, left out when identical failures are collapsed in report.md.
EXAMPLE_HEADLINES = (N_("Falsifying example:"), N_("Failing test case:"))


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
        "output": _(
            "The autograder could not grade this submission (exit status {status}); this is not "
            "a verdict on your code. Please contact the course staff.",
            status=status,
        ),
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
    # Why it failed, when the grader can tell: "not_implemented" (the part's own stub raised
    # NotImplementedError), "banned" (the run-time watch stopped a banned call).
    kind: str = ""
    voided: bool = False  # it passed, but the part uses a banned building block: not counted
    data: dict = field(default_factory=dict)  # machine data from the check (the translation's BLEU)


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
        return round(sum(c.score for c in self.checks), DECIMALS)

    @property
    def max_score(self) -> float:
        return round(sum(c.max_score for c in self.checks), DECIMALS)

    @property
    def counted(self) -> list[Check]:
        """The checks that carry points (not the 0-point "uses only allowed building blocks")."""
        return [c for c in self.checks if c.max_score > 0]

    def verdict(self, banned: bool | None = None) -> str:
        """``complete`` | ``not_attempted`` | ``lost_points`` | ``banned`` | ``not_graded`` (a key of
        VERDICTS). ``not_attempted``: no check passes and every failure is the part's own stub
        raising NotImplementedError. ``banned`` overrides the checks (``banned``: as known so far,
        for the live progress line)."""
        if self.violations if banned is None else banned:
            return "banned"
        if self.status in ("error", "not graded"):
            return "not_graded"
        counted = self.counted or self.checks
        failed = [c for c in counted if not c.passed]
        if not failed:
            return "complete"
        if len(failed) == len(counted) and all(c.kind == "not_implemented" for c in failed):
            return "not_attempted"
        return "lost_points"

    def diagnosis(self) -> str:
        """The first thing to look at, one line (in the current language), or ""."""
        if self.violations:
            return render(self.violations[0])
        if self.message:
            return render(self.message)
        failed = [c for c in self.checks if not c.passed and not c.voided]
        if not failed:
            return ""
        return headline(failed[0].output, self.note)


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
        return round(sum(p.score for p in self.parts), DECIMALS)

    @property
    def max_score(self) -> float:
        return round(sum(p.max_score for p in self.parts), DECIMALS)

    @property
    def leaderboard(self) -> list[dict]:
        """Gradescope's leaderboard entries: the translation's BLEU (when it was measured)."""
        for part in self.parts:
            for check in part.checks:
                bleu = check.data.get("bleu")
                if isinstance(bleu, (int, float)) and not isinstance(bleu, bool) and bleu == bleu:
                    return [{"name": "BLEU (translation)", "value": round(float(bleu), 2), "order": "desc"}]
        return []


def _r(x: float) -> float:
    return round(float(x), DECIMALS)


def points(x: float) -> str:
    """Points as shown to people: at most two decimals, no trailing zeros (``7.71``, ``2``, ``0.5``)."""
    text = f"{float(x):.{DECIMALS}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def message_core(output: str, note: str = "") -> str:
    """A check's message without what differs between identical failures: the part's
    dependency note (shown once per part) and hypothesis's example (per check)."""
    text = strip_note(output, note)
    starts = tuple({translate(h) for h in EXAMPLE_HEADLINES} | set(EXAMPLE_HEADLINES))
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if index and line.startswith(starts):
            lines = lines[:index]
            break
    return "\n".join(lines).strip()


def strip_note(output: str, note: str = "") -> str:
    """A check's message without the part's dependency note in front (report.md shows it once)."""
    for prefix in filter(None, (render(note), english(note) if note else "")):
        if output.startswith(prefix + "\n"):
            return output[len(prefix) + 1 :]
    return output


def headline(output: str, note: str = "") -> str:
    """The first line of a check's message (without the dependency note)."""
    core = message_core(output, note)
    return core.splitlines()[0] if core else _("(no message)")


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
    lines = [f"{_pad(part_, 14)} {_pad(checks_, 9, True)} {_pad(points_, 15, True)}   {status_}"]
    for part in grade.parts:
        lines.append(
            f"{part.name:<14} {passed_fraction(part):>9} {points(part.score):>7}/{points(part.max_score):<7}   "
            f"{status_text(part)}"
        )
    lines.append(f"{_pad(total_, 14)} {'':>9} {points(grade.score):>7}/{points(grade.max_score):<7}")
    for name, why in grade.left_out.items():
        lines.append(_("(not in this grade: {part} — {reason})", part=name, reason=render(why)))
    return "\n".join(lines)


def passed_fraction(part: PartResult) -> str:
    """``3/9``: the checks that count and pass, out of those that count (a banned part: 0)."""
    counted = part.counted
    return f"{sum(c.passed for c in counted)}/{len(counted)}"


def status_text(part: PartResult, banned: bool | None = None) -> str:
    """The verdict in words; a part the grader could not grade says why."""
    verdict = part.verdict(banned)
    if verdict == "not_graded" and part.message:
        return _("not graded: {reason}", reason=render(part.message))
    if verdict == "banned":
        return _("banned call: 0 points")
    return _(VERDICTS[verdict])


def progress_line(part: PartResult, banned: bool = False) -> str:
    """The live line ``grade`` prints after a part: the same numbers and verdict as the table."""
    return _(
        "{part}: {passed} checks pass, {points} points — {status} ({seconds} s)",
        part=part.name,
        passed="0/" + str(len(part.counted)) if banned else passed_fraction(part),
        points=f"{points(0 if banned else part.score)}/{points(part.max_score)}",
        status=status_text(part, banned or None),
        seconds=f"{part.seconds:.1f}",
    )


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
    return (
        digest == seal_data["sha256"]
        and (nonce is None or nonce == seal_data["nonce"])
        and (sha256 is None or sha256 == digest)
    )


def build_results(grade: GradeResult, leaderboard: bool = False) -> dict:
    """results.json; ``leaderboard``: add Gradescope's ``leaderboard`` (the translation's BLEU,
    course.toml ``[gradescope] leaderboard``) when the BLEU was measured."""
    tests = []
    for part in grade.parts:
        ban = next((c.name for c in part.checks if part.violations and c.max_score == 0 and c.kind == "banned"), "")
        for check in part.checks:
            output = check.output
            if ban and check.name != ban:  # the ban is told once, on its own check
                pointer = _('Not counted: this part uses a banned building block (see the check "{check}").', check=ban)
                output = pointer + ("\n\n" + output if output else "")
            tests.append(
                {
                    "name": check.name,
                    "score": _r(check.score),
                    "max_score": _r(check.max_score),
                    "status": "passed" if check.passed else "failed",
                    "output": _clip(output),
                    "output_format": "text",
                    "tags": [part.name, "hidden" if check.hidden else "public"],
                    "visibility": "after_published" if check.hidden else "visible",
                }
            )
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
                    "score": _r(part.score),
                    "max_score": _r(part.max_score),
                    "status": part.status,
                    "checks": len([c for c in part.checks if c.max_score > 0]),
                    "passed": len([c for c in part.checks if c.max_score > 0 and c.passed]),
                    "message": english(part.message),
                    "note": english(part.note),
                    "violations": [english(v) for v in part.violations],
                    "verdict": part.verdict(),
                    "diagnosis": english_diagnosis(part),
                    # the translation part: when and why training stopped (grader/translation/grading.py)
                    **next(({"training": c.data["training"]} for c in part.checks if "training" in c.data), {}),
                }
                for part in grade.parts
            },
            "left_out": {name: english(why) for name, why in grade.left_out.items()},
            "flags": [english(f) for f in grade.flags],
            "warnings": [english(w) for w in grade.warnings],
            "rejected": english(grade.rejected),
            "sandbox": grade.sandbox,
            "timings": {
                "total_s": round(grade.execution_time, 2),
                "parts_s": {p.name: round(p.seconds, 2) for p in grade.parts},
                "sandbox_requests": {p.name: p.requests for p in grade.parts},
            },
        },
    }
    if leaderboard and grade.leaderboard:
        results["leaderboard"] = grade.leaderboard
    return seal(results, grade.nonce)


def english_diagnosis(part: PartResult) -> str:
    """``PartResult.diagnosis`` for extra_data, which does not depend on the grading language:
    a banned call or the part's message, in English. A failed check's headline is left out: the
    checks' output is written in the grading language (report.md and the check itself carry it)."""
    if part.violations:
        return english(part.violations[0])
    if part.message:
        return english(part.message)
    return ""


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
    """``report.md``, in the current language (check names as the tests give them).

    Made to be read in a minute: the table gives each part's verdict (``complete``, ``not
    attempted``, ``lost points``, ``banned``, ``not graded``); then, per part that lost points,
    the first diagnosis and the failed checks, those failing with the same message collapsed into
    one entry ("12 checks fail with the same message"). A banned call is named once, in its
    part's section (with file:line), not on every check nor again under Flags.
    """
    lines = ["# " + _("Grade report: {submission}", submission=_md_cell(grade.submission)), ""]
    if grade.rejected:
        lines += ["**" + _("Your submission could not be graded:") + "**", "", _fence(render(grade.rejected)), ""]
    total = _("Total: {score} / {max_score}", score=points(grade.score), max_score=points(grade.max_score))
    lines += [f"**{total}**", ""]
    part_, passed_, points_, status_, total_ = _("part"), _("checks passed"), _("points"), _("status"), _("total")
    lines += [f"| {part_} | {passed_} | {points_} | {status_} |", "|---|---:|---:|---|"]
    for part in grade.parts:
        lines.append(
            f"| {part.name} — {_md_cell(translate(part.title))} | {passed_fraction(part)} "
            f"| {points(part.score)} / {points(part.max_score)} | {_md_cell(status_text(part))} |"
        )
    lines.append(f"| **{total_}** | | **{points(grade.score)} / {points(grade.max_score)}** | |")
    for name, why in grade.left_out.items():
        text = _("Not in this grade: `{part}` — {reason}.", part=name, reason=_md_cell(render(why)))
        lines.append(f"\n_{text}_")
    lines.append("")
    bans = {str(v) for part in grade.parts for v in part.violations}
    flags = [f for f in grade.flags if str(f) not in bans]  # a part's ban is shown in its section
    if flags:
        lines += ["## " + _("Flags"), ""] + [f"- {_md_cell(render(f))}" for f in flags] + [""]
    if grade.warnings:
        lines += ["## " + _("Notes on the submission"), ""]
        lines += [f"- {_md_cell(render(w))}" for w in grade.warnings] + [""]
    failed = [p for p in grade.parts if p.name != "translation" and p.verdict() != "complete"]
    if failed:
        lines += ["## " + _("Failed checks"), ""]
        for part in failed:
            lines += _part_section(part)
    training = [(p, c) for p in grade.parts for c in p.checks if p.name == "translation" or c.report_md]
    if training:
        no_message = _("(no message)")
        lines += ["## " + _("Training and translation"), ""]
        for part, check in training:
            if part.note and not check.passed:
                lines += [f"> {render(part.note)}", ""]
            lines += [f"#### {_md_cell(check.name)} — {points(check.score)} / {points(check.max_score)}", ""]
            lines += [check.report_md or _fence(_clip(check.output) or no_message), ""]
            if check.picture:
                alt = _("attention picture")
                lines += [f"![{alt}]({check.picture})", ""]
    return "\n".join(lines)


def _part_section(part: PartResult) -> list[str]:
    """One part of "Failed checks": verdict, first diagnosis, collapsed failures."""
    lines = [f"### {part.name} — {_md_cell(status_text(part))}", ""]
    if part.note:
        lines += [f"> {render(part.note)}", ""]
    if part.violations:
        lines += ["**" + _("Not counted: this part uses a building block the assignment bans:") + "**", ""]
        lines += [f"- {_md_cell(render(v))}" for v in part.violations] + [""]
    failed = [c for c in part.counted or part.checks if not c.passed and not c.voided]
    if part.violations:
        stopped = [c for c in failed if c.kind == "banned"]
        voided = [c for c in part.checks if c.voided]
        failed = [c for c in failed if c.kind != "banned"]
        if stopped:
            lines += [_("{count} checks stopped at the banned call.", count=len(stopped)), ""]
        if voided:
            lines += [_("{count} checks pass but do not count.", count=len(voided)), ""]
    elif failed:
        lines += ["**" + _("First diagnosis:") + "**", "", _fence(part.diagnosis()), ""]
    groups: dict[str, list[Check]] = {}
    for check in failed:  # a stub or a banned call: its first line says it all (the traceback varies)
        core = message_core(check.output, part.note)
        groups.setdefault(core.split("\n")[0] if check.kind else core, []).append(check)
    hidden_ = " _" + _("(hidden check)") + "_"
    for checks in groups.values():
        first = checks[0]
        shown = _clip(strip_note(first.output, part.note)) or _("(no message)")
        if len(checks) == 1:
            lines += [f"#### {_md_cell(first.name)}{hidden_ if first.hidden else ''}", "", _fence(shown), ""]
            continue
        lines += ["#### " + _("{count} checks fail with the same message", count=len(checks)), ""]
        lines += [f"- {_md_cell(c.name)}{hidden_ if c.hidden else ''}" for c in checks[:MAX_NAMES_LISTED]]
        if len(checks) > MAX_NAMES_LISTED:
            lines.append("- " + _("… and {count} more", count=len(checks) - MAX_NAMES_LISTED))
        lines += ["", _("The message (of the first one):"), "", _fence(shown), ""]
    return lines


def write_outputs(grade: GradeResult, out_dir: Path, leaderboard: bool = False) -> dict:
    """Write results.json and report.md; return the results dict."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = build_results(grade, leaderboard)
    temporary = out_dir / "results.json.tmp"
    temporary.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    temporary.replace(out_dir / "results.json")  # never a half-written results.json
    (out_dir / "report.md").write_text(render_report(grade), encoding="utf-8")
    return results
