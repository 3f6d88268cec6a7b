"""Assertions whose failure messages a student can act on.

Every message says what was checked, what was expected and what came back (only the
mismatching entries, never whole tensors), followed by a hint. When the wrong answer
matches the signature of a known bug (``likely_bugs``), the message leads with that bug.
"""
from __future__ import annotations

import torch

MAX_SHOWN = 5


def _fmt_index(index) -> str:
    return "[" + ", ".join(str(int(i)) for i in index) + "]"


def _fmt(value) -> str:
    if isinstance(value, bool):
        return str(value)
    value = float(value)
    return f"{value:.6g}"


def _as_tensor(value, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    raise AssertionError(f"{what}: expected a torch.Tensor, got {type(value).__name__}: {value!r:.200}")


def _mismatch_lines(actual: torch.Tensor, expected: torch.Tensor, bad: torch.Tensor) -> list[str]:
    positions = bad.nonzero()
    lines = [f"  {len(positions)} of {bad.numel()} entries differ, e.g.:"]
    for index in positions[:MAX_SHOWN]:
        i = tuple(index.tolist())
        lines.append(f"    at {_fmt_index(i)}: expected {_fmt(expected[i])}, got {_fmt(actual[i])}")
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
    rtol: float = 1e-5,
    atol: float = 1e-6,
    likely_bugs: dict[str, torch.Tensor] | None = None,
    check_dtype: bool = True,
) -> None:
    """Assert ``actual ≈ expected`` elementwise (``|a - e| <= atol + rtol * |e|``).

    Args:
        what: what was checked, in a student's words ("attention output for a padded batch").
        hint: what to look at when it fails.
        likely_bugs: ``{description of a bug: what a buggy implementation returns}``. When the
            actual value matches one of them, the failure message starts with that bug.
        check_dtype: require the same dtype (outputs must follow the input's dtype).
    """
    actual = _as_tensor(actual, what)
    expected = torch.as_tensor(expected)
    problem = None
    headline = "wrong result"
    if actual.shape != expected.shape:
        headline = "wrong shape"
        problem = [f"  expected shape {tuple(expected.shape)}, got shape {tuple(actual.shape)}"]
    elif check_dtype and actual.dtype != expected.dtype:
        headline = "wrong dtype"
        problem = [f"  expected dtype {expected.dtype}, got dtype {actual.dtype} (no hard-coded dtypes: follow the input's)"]
    else:
        if expected.dtype == torch.bool or actual.dtype == torch.bool:
            bad = actual.bool() != expected.bool()
        else:
            a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
            if not torch.isfinite(a).all():
                nonfinite = (~torch.isfinite(a)).nonzero()
                where = ", ".join(_fmt_index(i) for i in nonfinite[:MAX_SHOWN].tolist())
                problem = [f"  got {len(nonfinite)} non-finite values (NaN or inf), e.g. at {where}"]
                bad = None
            else:
                bad = (a - e).abs() > atol + rtol * e.abs()
        if bad is not None and bad.any():
            problem = _mismatch_lines(actual.detach().cpu(), expected.detach().cpu(), bad)
            if expected.dtype != torch.bool:
                diff = (actual.detach().double().cpu() - expected.double().cpu()).abs().max()
                problem.append(f"  largest difference {_fmt(diff)} (tolerance: atol={atol:g}, rtol={rtol:g})")
    if problem is None:
        return
    lines = [f"{what}: {headline}."]
    for bug, candidate in (likely_bugs or {}).items():
        if _matches(actual.detach().cpu(), candidate, max(rtol, 1e-4), max(atol, 1e-5)):
            lines = [f"{what}: likely bug — {bug}."]
            break
    lines += problem
    if hint:
        lines.append(f"  hint: {hint}")
    raise AssertionError("\n".join(lines))


def assert_equal(actual, expected, *, what: str, hint: str = "", likely_bugs=None) -> None:
    """Exact equality (masks, token ids), with the same message format as ``assert_close``."""
    actual = _as_tensor(actual, what)
    expected = torch.as_tensor(expected)
    if actual.dtype != expected.dtype:
        lines = [f"{what}: expected dtype {expected.dtype}, got dtype {actual.dtype}."]
        if hint:
            lines.append(f"  hint: {hint}")
        raise AssertionError("\n".join(lines))
    assert_close(actual, expected, what=what, hint=hint, rtol=0.0, atol=0.0, likely_bugs=likely_bugs)


def check(condition: bool, message: str, hint: str = "") -> None:
    """A plain assertion with a student-readable message."""
    if not condition:
        raise AssertionError(message + (f"\n  hint: {hint}" if hint else ""))


def tolerance(dtype: torch.dtype) -> dict:
    """Default (rtol, atol) for comparing a computation in ``dtype`` with a float64 oracle."""
    if dtype == torch.float64:
        return {"rtol": 1e-9, "atol": 1e-10}
    return {"rtol": 1e-4, "atol": 1e-5}
