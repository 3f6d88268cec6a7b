"""Naming the bug behind a failure: the helpers around ``assert_close(..., likely_bugs=...)``.

A test that knows what the usual mistakes return passes ``{description of the bug: what a
buggy implementation returns}``; when the student's result matches one of them, the failure
message leads with that bug (``checks.assert_close``). The oracles of each part compute the
candidates (``oracles.attention.mha_bug_outputs``, ``oracles.layers.encoder_bug_outputs``, …);
the helpers here are the same for every part:

* ``lazy_bugs``: candidates computed only when a check fails (passing tests skip the work);
* ``distinct_bugs``: drop the candidates that coincide with the right answer for these inputs;
* ``matching_bug``: the candidate a result matches, for ``check()`` messages;
* ``assert_close_naming_bugs``: ``assert_close`` with costly candidates and float64 precision loss named.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from grader.i18n import _
from tests.support.checks import assert_close

PRECISION_BUG = _(
    "float64 precision is lost: the result is right only to float32 precision — look for a float32 constant "
    "or intermediate (torch.tensor(d_model), torch.sqrt(torch.tensor(d_k)), a hard-coded dtype=torch.float32); "
    "use math.sqrt and keep the input's dtype"
)


class lazy_bugs(Mapping):
    """``likely_bugs`` computed only when needed: ``assert_close`` reads the bug signatures
    only after a mismatch, so passing tests skip the (many) buggy-variant computations.

    ``lazy_bugs(lambda: {...})`` behaves like the dict the function returns."""

    def __init__(self, compute):
        self._compute = compute
        self._bugs = None

    def _get(self) -> dict:
        if self._bugs is None:
            self._bugs = dict(self._compute())
        return self._bugs

    def __bool__(self) -> bool:  # truthy without computing anything
        return True

    def __getitem__(self, key):
        return self._get()[key]

    def __iter__(self):
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def distinct_bugs(bugs: dict, expected, rtol: float = 1e-3, atol: float = 1e-4) -> dict:
    """Drop the bug signatures that (for these inputs) coincide with the correct answer, e.g.
    "heads split without the transpose" with a single head: naming them would mislead."""
    expected = torch.as_tensor(expected).double()
    kept = {}
    for description, value in bugs.items():
        value = torch.as_tensor(value)
        if value.shape != expected.shape:
            kept[description] = value
            continue
        if not torch.isfinite(value).all():
            kept[description] = value
            continue
        if not torch.allclose(value.double(), expected, rtol=rtol, atol=atol):
            kept[description] = value
    return kept


def matching_bug(actual, bugs: Mapping, rtol: float = 1e-4, atol: float = 1e-5) -> str | None:
    """The description of the first bug whose result ``actual`` matches (None: no known bug).
    For ``check()`` messages; ``assert_close`` does the same with its ``likely_bugs``."""
    actual = torch.as_tensor(actual).detach().cpu().double()
    for description, value in bugs.items():
        value = torch.as_tensor(value).double()
        if value.shape == actual.shape and torch.allclose(actual, value, rtol=rtol, atol=atol):
            return description
    return None


def assert_close_naming_bugs(actual, expected, bugs=None, *, likely_bugs=None, **kwargs):
    """``checks.assert_close``, with the known-bug outputs (``bugs()``, costly) computed only when
    the check fails (``likely_bugs`` as in ``assert_close`` for the cheap ones). For float64
    checks, a result right to float32 precision only is named too."""
    try:
        assert_close(actual, expected, **kwargs)
        return
    except AssertionError:
        pass
    likely = dict(likely_bugs or {})
    likely.update(bugs() if bugs is not None else {})
    if torch.as_tensor(expected).dtype == torch.float64:
        likely[PRECISION_BUG] = expected
    assert_close(actual, expected, likely_bugs=likely, **kwargs)  # outside the except: no chained traceback
