"""Run-time tripwires for the PyTorch building blocks the assignment puts off limits.

Threat: a submission that passes the attention tests by calling
``F.scaled_dot_product_attention`` (or ``nn.LayerNorm``, ``nn.Transformer``, or
``F.cross_entropy`` inside ``LabelSmoothingLoss``) has not done the assignment. The static
pass (``static_check.py``) reads the source; these tripwires catch what reading misses
(names built at run time, aliases through helper modules) by wrapping the banned callables in
the worker *before* any student code is imported.

A wrapped callable looks at who called it. Frames inside PyTorch and the standard library
are skipped; if the first remaining frame is student code, the call is a violation: it is
recorded (so that a student's ``try/except`` cannot hide it) and ``BannedCallError`` is
raised, naming the call and the rule. Trusted code in the worker (``grader.runtime``, the
translation job) may call these functions freely — its frames are not the student's.

This file is data plus mechanism only: it imports nothing from the grader (the worker runs a
copy of it) and ``static_check.py`` reuses its rule table, so both passes enforce one list.

Limits: code running in the worker can undo any Python-level wrapper (it shares the
process). So the wrappers carry no ``__wrapped__`` signpost, the worker checks after every
request that each one is still in place (``check_integrity``: removing one is reported as a
violation of that ban and the wrapper is put back), and the static pass treats reaching for
``__wrapped__``/``__closure__``/``gc`` referents or monkeypatching torch as tampering. Code that
removes a tripwire, calls the original and restores the tripwire within one call still gets
through at run time; the static pass and a human reading the flags are the backstop.
"""
from __future__ import annotations

import functools
import os
import sys
import sysconfig
from dataclasses import dataclass

ANYWHERE = "anywhere"  # any student code
IN_LABEL_SMOOTHING = "in LabelSmoothingLoss"  # only inside training.LabelSmoothingLoss

RULE_ATTENTION = ("implement attention yourself (§3.2): PyTorch's built-in attention "
                  "(F.scaled_dot_product_attention, F.multi_head_attention_forward, nn.MultiheadAttention) is off limits")
RULE_NORM = "implement layer normalisation yourself (§3.1): nn.LayerNorm and F.layer_norm are off limits"
RULE_TRANSFORMER = ("build the model from your own layers: nn.Transformer, nn.TransformerEncoder(Layer) "
                    "and nn.TransformerDecoder(Layer) are off limits")
RULE_LOSS = ("build LabelSmoothingLoss from log_softmax (§5.4): F.cross_entropy and nn.CrossEntropyLoss "
             "are off limits inside it")


@dataclass(frozen=True)
class Ban:
    path: str  # canonical dotted path of the callable (what static_check resolves names to)
    label: str  # how the student wrote it, in messages
    rule: str
    scope: str = ANYWHERE
    extra_parts: tuple[str, ...] = ()  # parts affected besides the part of the offending file


BANS = (
    Ban("torch.nn.functional.scaled_dot_product_attention", "F.scaled_dot_product_attention", RULE_ATTENTION),
    Ban("torch.nn.functional.multi_head_attention_forward", "F.multi_head_attention_forward", RULE_ATTENTION),
    Ban("torch.nn.MultiheadAttention", "nn.MultiheadAttention", RULE_ATTENTION),
    Ban("torch.nn.functional.layer_norm", "F.layer_norm", RULE_NORM),
    Ban("torch.layer_norm", "torch.layer_norm", RULE_NORM),
    Ban("torch.native_layer_norm", "torch.native_layer_norm", RULE_NORM),
    Ban("torch.nn.LayerNorm", "nn.LayerNorm", RULE_NORM),
    *(Ban(f"torch.nn.{name}", f"nn.{name}", RULE_TRANSFORMER, extra_parts=("model",))
      for name in ("Transformer", "TransformerEncoder", "TransformerDecoder",
                   "TransformerEncoderLayer", "TransformerDecoderLayer")),
    Ban("torch.nn.functional.cross_entropy", "F.cross_entropy", RULE_LOSS, IN_LABEL_SMOOTHING),
    Ban("torch.nn.CrossEntropyLoss", "nn.CrossEntropyLoss", RULE_LOSS, IN_LABEL_SMOOTHING),
)
BANS_BY_PATH = {ban.path: ban for ban in BANS}


class BannedCallError(RuntimeError):
    """Student code called a building block that the assignment puts off limits."""


_installed = False
_armed: list = []  # (owner, attribute, wrapper, ban) for every tripwire in place


def _skip_dirs() -> tuple[str, ...]:
    import torch

    dirs = {os.path.dirname(os.path.abspath(torch.__file__)) + os.sep, os.path.abspath(__file__)}
    for key in ("stdlib", "platstdlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            dirs.add(os.path.abspath(path) + os.sep)
    return tuple(dirs)


def install(student_dir: str, on_violation) -> None:
    """Wrap every banned callable. ``on_violation(dict)`` is told about each offending call."""
    global _installed
    if _installed:
        return
    _installed = True
    import torch

    student_dir = os.path.abspath(student_dir) + os.sep
    skip = _skip_dirs()

    def offending_frames(scope: str):
        """The student frames on the stack if this call is a violation, else None."""
        frame = sys._getframe(2)
        first = None
        students = []
        while frame is not None:
            filename = os.path.abspath(frame.f_code.co_filename)
            if first is None and not filename.startswith(skip) and not filename.startswith("<frozen"):
                first = frame
            if filename.startswith(student_dir):
                students.append(frame)
            frame = frame.f_back
        if first is None or not os.path.abspath(first.f_code.co_filename).startswith(student_dir):
            return None  # called by trusted code (or by nobody we know): allowed
        if scope == IN_LABEL_SMOOTHING and not any(
            os.path.basename(f.f_code.co_filename) == "training.py"
            and getattr(f.f_code, "co_qualname", f.f_code.co_name).startswith("LabelSmoothingLoss")
            for f in students
        ):
            return None
        return students

    def check(ban: Ban) -> None:
        students = offending_frames(ban.scope)
        if students is None:
            return
        innermost = students[0]
        relative = os.path.relpath(innermost.f_code.co_filename, os.path.dirname(student_dir.rstrip(os.sep)))
        on_violation({
            "call": ban.label,
            "rule": ban.rule,
            "file": relative.replace(os.sep, "/"),
            "line": innermost.f_lineno,
            "function": getattr(innermost.f_code, "co_qualname", innermost.f_code.co_name),
            "student_files": [
                os.path.relpath(f.f_code.co_filename, os.path.dirname(student_dir.rstrip(os.sep))).replace(os.sep, "/")
                for f in students
            ],
            "extra_parts": list(ban.extra_parts),
        })
        raise BannedCallError(f"{ban.label} is off limits here: {ban.rule}")

    def wrap(owner, attribute: str, ban: Ban) -> None:
        original = getattr(owner, attribute, None)
        if original is None:
            return

        @functools.wraps(original)
        def tripwire(*args, **kwargs):
            check(ban)
            return original(*args, **kwargs)

        del tripwire.__wrapped__  # no signpost to the original
        setattr(owner, attribute, tripwire)
        _armed.append((owner, attribute, tripwire, ban))

    functional = torch.nn.functional
    for ban in BANS:
        owner_path, _, name = ban.path.rpartition(".")
        if owner_path == "torch.nn.functional":
            wrap(functional, name, ban)
            wrap(torch._C._nn, name, ban)  # F.scaled_dot_product_attention lives here too
        elif owner_path == "torch":
            wrap(torch, name, ban)
        elif owner_path == "torch.nn":
            cls = getattr(torch.nn, name, None)
            if isinstance(cls, type):
                wrap(cls, "__init__", ban)  # constructing the module is the offence


def check_integrity() -> list[Ban]:
    """The bans whose tripwire was removed or replaced since the last check (re-armed now).

    The worker calls this after every request: code that puts the original function back to
    call it unobserved is caught by its side effect, even if it hides the call itself.
    """
    tampered = []
    for owner, attribute, wrapper, ban in _armed:
        try:
            current = getattr(owner, attribute, None)
        except Exception:
            current = None
        if current is not wrapper:
            if ban not in tampered:
                tampered.append(ban)
            try:
                setattr(owner, attribute, wrapper)
            except Exception:
                pass
    return tampered
