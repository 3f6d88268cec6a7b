"""Assertions whose failure messages a student can act on, in the student's language.

Every message says what was checked, what was expected and what came back (only the
mismatching entries, never whole tensors), followed by a hint. When the wrong answer
matches the signature of a known bug (``likely_bugs``), the message leads with that bug.

A failure is a ``CheckFailure`` (an ``AssertionError``) that keeps its parts apart, so that
``make check`` can show the diagnosis first and the input description last:

* ``what``: the quantity checked, in a student's words ("sum of each row of the weights");
* ``case``: the input it was checked on ("Q (3, 4, 8), K (3, 5, 8), float32, padding mask");
* ``problem``: the bug recognised, or the headline ("wrong result", "wrong shape");
* ``hint``: what to look at.

Texts are written in English inside ``_()`` and translated through the catalogues
(``grader/i18n.py``); the callers pass translated ``what``/``hint``/bug descriptions.
"""

from __future__ import annotations

import torch

from grader.i18n import _

MAX_SHOWN = 5


class CheckFailure(AssertionError):
    """A failed check, with its diagnosis kept apart from the details."""

    def __init__(
        self, what: str, problem: str, *, details=(), hint: str = "", case: str = "", likely_bug: bool = False
    ):
        self.what, self.problem, self.hint, self.case = what, problem, hint, case
        self.likely_bug = likely_bug
        self.details = list(details)
        super().__init__(self.render())

    @property
    def diagnosis(self) -> str:
        """One line: the bug (or the problem) first, then what was checked."""
        if self.likely_bug:
            bug = _("likely bug — {bug}", bug=self.problem)
            return _("{diagnosis} ({what})", diagnosis=bug, what=self.what) if self.what else bug
        return f"{self.what}: {self.problem}" if self.what else self.problem

    def render(self) -> str:
        return "\n".join(failure_lines(self.diagnosis, self.case, self.details, self.hint))


def failure_lines(diagnosis: str, case: str = "", details=(), hint: str = "") -> list[str]:
    """The layout of every failure message: the diagnosis, the input, the details, the hint."""
    lines = [diagnosis]
    if case:
        lines.append("  " + _("input: {case}", case=case))
    lines += details
    if hint:
        lines.append("  " + _("hint: {hint}", hint=hint))
    return lines


def _fmt_index(index) -> str:
    return "[" + ", ".join(str(int(i)) for i in index) + "]"


def _fmt(value) -> str:
    if isinstance(value, bool):
        return str(value)
    value = float(value)
    return f"{value:.6g}"


def _as_tensor(value, what: str, case: str = "") -> torch.Tensor:
    __tracebackhide__ = True
    if isinstance(value, torch.Tensor):
        return value
    raise CheckFailure(
        what,
        _("expected a torch.Tensor, got {type}: {value}", type=type(value).__name__, value=f"{value!r:.200}"),
        case=case,
    )


def _mismatch_lines(actual: torch.Tensor, expected: torch.Tensor, bad: torch.Tensor) -> list[str]:
    positions = bad.nonzero()
    lines = ["  " + _("{count} of {total} entries differ, e.g.:", count=len(positions), total=bad.numel())]
    for index in positions[:MAX_SHOWN]:
        i = tuple(index.tolist())
        lines.append(
            "    "
            + _(
                "at {index}: expected {expected}, got {actual}",
                index=_fmt_index(i),
                expected=_fmt(expected[i]),
                actual=_fmt(actual[i]),
            )
        )
    return lines


def _matches(actual: torch.Tensor, candidate: torch.Tensor, rtol: float, atol: float) -> bool:
    candidate = torch.as_tensor(candidate)
    if candidate.shape != actual.shape:
        return False
    if actual.dtype == torch.bool or candidate.dtype == torch.bool:
        return bool(torch.equal(actual.bool(), candidate.bool()))
    return bool(torch.allclose(actual.double(), candidate.double(), rtol=rtol, atol=atol, equal_nan=False))


def assert_close(
    actual,
    expected,
    *,
    what: str,
    hint: str = "",
    case: str = "",
    rtol: float = 1e-5,
    atol: float = 1e-6,
    likely_bugs: dict[str, torch.Tensor] | None = None,
    check_dtype: bool = True,
) -> None:
    """Assert ``actual ≈ expected`` elementwise (``|a - e| <= atol + rtol * |e|``).

    Args:
        what: what was checked, in a student's words ("attention output for a padded batch").
        hint: what to look at when it fails.
        case: the input it was checked on (shapes, dtype, mask), shown below the diagnosis.
        likely_bugs: ``{description of a bug: what a buggy implementation returns}``. When the
            actual value matches one of them, the failure message starts with that bug.
        check_dtype: require the same dtype (outputs must follow the input's dtype).
    """
    __tracebackhide__ = True
    actual = _as_tensor(actual, what, case)
    expected = torch.as_tensor(expected)
    problem = None
    headline = _("wrong result")
    if actual.shape != expected.shape:
        headline = _("wrong shape")
        problem = [
            "  "
            + _(
                "expected shape {expected}, got shape {actual}",
                expected=tuple(expected.shape),
                actual=tuple(actual.shape),
            )
        ]
    elif check_dtype and actual.dtype != expected.dtype:
        headline = _("wrong dtype")
        problem = [
            "  "
            + _(
                "expected dtype {expected}, got dtype {actual} (no hard-coded dtypes: follow the input's)",
                expected=expected.dtype,
                actual=actual.dtype,
            )
        ]
    else:
        if expected.dtype == torch.bool or actual.dtype == torch.bool:
            bad = actual.bool() != expected.bool()
        else:
            a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
            if not torch.isfinite(a).all():
                nonfinite = (~torch.isfinite(a)).nonzero()
                where = ", ".join(_fmt_index(i) for i in nonfinite[:MAX_SHOWN].tolist())
                headline = _("NaN or inf in the result")
                problem = [
                    "  "
                    + _(
                        "got {count} non-finite values (NaN or inf), e.g. at {where}", count=len(nonfinite), where=where
                    )
                ]
                bad = None
            else:
                bad = (a - e).abs() > atol + rtol * e.abs()
        if bad is not None and bad.any():
            problem = _mismatch_lines(actual.detach().cpu(), expected.detach().cpu(), bad)
            if expected.dtype != torch.bool:
                diff = (actual.detach().double().cpu() - expected.double().cpu()).abs().max()
                problem.append(
                    "  "
                    + _(
                        "largest difference {diff} (tolerance: atol={atol}, rtol={rtol})",
                        diff=_fmt(diff),
                        atol=f"{atol:g}",
                        rtol=f"{rtol:g}",
                    )
                )
    if problem is None:
        return
    for bug, candidate in (likely_bugs or {}).items():
        if _matches(actual.detach().cpu(), candidate, max(rtol, 1e-4), max(atol, 1e-5)):
            raise CheckFailure(what, bug, details=problem, hint=hint, case=case, likely_bug=True)
    raise CheckFailure(what, headline, details=problem, hint=hint, case=case)


def assert_equal(actual, expected, *, what: str, hint: str = "", case: str = "", likely_bugs=None) -> None:
    """Exact equality (masks, token ids), with the same message format as ``assert_close``."""
    __tracebackhide__ = True
    actual = _as_tensor(actual, what, case)
    expected = torch.as_tensor(expected)
    if actual.dtype != expected.dtype:
        raise CheckFailure(
            what,
            _("wrong dtype"),
            hint=hint,
            case=case,
            details=[
                "  " + _("expected dtype {expected}, got dtype {actual}", expected=expected.dtype, actual=actual.dtype)
            ],
        )
    assert_close(actual, expected, what=what, hint=hint, case=case, rtol=0.0, atol=0.0, likely_bugs=likely_bugs)


def check(condition: bool, message: str, hint: str = "", *, case: str = "", likely_bug: bool = False) -> None:
    """A plain assertion with a student-readable message: ``message`` says what is wrong
    (the diagnosis; with ``likely_bug=True``, the bug it recognises), ``case`` which input
    showed it, ``hint`` what to look at."""
    __tracebackhide__ = True
    if not condition:
        raise CheckFailure("", message, hint=hint, case=case, likely_bug=likely_bug)


def raised_by(call):
    """The exception ``call()`` raises (None if none), to check for a *kind* of error with a
    student-readable message; an unfinished stub's NotImplementedError is raised on."""
    try:
        call()
    except NotImplementedError:
        raise
    except Exception as error:
        return error
    return None


# How far a computation in a dtype may land from the float64 oracle (``|a - e| <= atol + rtol * |e|``).
# "layer": one layer or function. "stack": a stack of layers (Encoder, Decoder, the Transformer),
# whose float32 rounding passes through every layer and the vocabulary projection. The reference
# solution's float32 outputs stay within a tenth of 1e-4 (rtol and atol) in 1000 random
# configurations drawn like the public and hidden stack and model tests; 2e-4 leaves room for
# other correct orders of the sums, a bug is off by far more, and the float64 checks catch the
# subtle ones.
TOLERANCES = {
    "layer": {torch.float64: {"rtol": 1e-9, "atol": 1e-10}, torch.float32: {"rtol": 1e-4, "atol": 1e-5}},
    "stack": {torch.float64: {"rtol": 1e-9, "atol": 1e-9}, torch.float32: {"rtol": 2e-4, "atol": 2e-4}},
}


def tolerance(dtype: torch.dtype, *, stack: bool = False) -> dict:
    """(rtol, atol) for comparing a computation in ``dtype`` with a float64 oracle: of one layer,
    or of a stack of layers (``stack=True``). Any dtype other than float64 gets float32's."""
    table = TOLERANCES["stack" if stack else "layer"]
    return dict(table[torch.float64 if dtype == torch.float64 else torch.float32])
