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

ATen operators. A wrapper on ``F.layer_norm`` does not see ``torch.ops.aten.native_layer_norm``
or ``torch._C._nn.cross_entropy_loss``, nor names built at run time. So the worker also runs
under a ``TorchFunctionMode`` (``OperatorWatch``): every torch call made from Python — the
``torch.*`` and ``F.*`` functions, tensor methods, ``torch.ops.aten.*`` packets and overloads —
passes through it, and the operators in ``ATEN_BANS`` (``layer_norm``, ``native_layer_norm``,
``scaled_dot_product_attention`` and its ``_scaled_dot_product_*`` kernels,
``_native_multi_head_attention``, ``cross_entropy_loss``) get the same check as a tripwire. A
``TorchDispatchMode`` would be cheaper to reason about but does not see the composite operators
(``aten::layer_norm``, ``aten::cross_entropy_loss`` and ``aten::scaled_dot_product_attention``
decompose before dispatch); the profiler sees them but cannot say which Python code made the
call. Limits: the mode is per thread and is not consulted by TorchScript, so a call made in a
thread the student starts, or inside ``torch.jit.script`` code, is not seen (the static pass
flags ``threading`` and ``torch.jit`` for a human); removing the mode is caught after the
request, like a removed tripwire.

Who is the student. Every frame whose file is not PyTorch, another installed package, the
standard library or the worker's own copy of the grader counts as student code — also code
compiled under a made-up file name (``compile(src, "<loss>", "exec")``) — and a call with no
such frame and no trusted caller at all (a thread started on a banned function) is the
student's too.
"""

from __future__ import annotations

import functools
import os
import sys
import sysconfig
from dataclasses import dataclass

ANYWHERE = "anywhere"  # any student code
IN_LABEL_SMOOTHING = "in LabelSmoothingLoss"  # only inside training.LabelSmoothingLoss

RULE_ATTENTION = (
    "implement attention yourself (§3.2): PyTorch's built-in attention "
    "(F.scaled_dot_product_attention, F.multi_head_attention_forward, nn.MultiheadAttention) is off limits"
)
RULE_NORM = "implement layer normalisation yourself (§3.1): nn.LayerNorm and F.layer_norm are off limits"
RULE_TRANSFORMER = (
    "build the model from your own layers: nn.Transformer, nn.TransformerEncoder(Layer) "
    "and nn.TransformerDecoder(Layer) are off limits"
)
RULE_LOSS = (
    "build LabelSmoothingLoss from log_softmax (§5.4): F.cross_entropy and nn.CrossEntropyLoss are off limits inside it"
)
RULE_WATCH = (
    "the grader watches PyTorch's operators for the banned building blocks (layer normalisation, "
    "attention, cross-entropy); switching that watch off is tampering"
)


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
    *(
        Ban(f"torch.nn.{name}", f"nn.{name}", RULE_TRANSFORMER, extra_parts=("model",))
        for name in (
            "Transformer",
            "TransformerEncoder",
            "TransformerDecoder",
            "TransformerEncoderLayer",
            "TransformerDecoderLayer",
        )
    ),
    Ban("torch.nn.functional.cross_entropy", "F.cross_entropy", RULE_LOSS, IN_LABEL_SMOOTHING),
    Ban("torch.nn.CrossEntropyLoss", "nn.CrossEntropyLoss", RULE_LOSS, IN_LABEL_SMOOTHING),
)
BANS_BY_PATH = {ban.path: ban for ban in BANS}

# Operators seen by ``OperatorWatch``, by the name torch gives the callable (``__name__`` of a
# function or builtin, the operator name of a ``torch.ops.aten`` packet or overload).
_ATEN_RULES = {
    "layer_norm": RULE_NORM,
    "native_layer_norm": RULE_NORM,
    "scaled_dot_product_attention": RULE_ATTENTION,
    "_native_multi_head_attention": RULE_ATTENTION,
    "multi_head_attention_forward": RULE_ATTENTION,
    "_transformer_encoder_layer_fwd": RULE_TRANSFORMER,
    "cross_entropy_loss": RULE_LOSS,
    "cross_entropy": RULE_LOSS,
}
ATEN_PREFIXES = {"_scaled_dot_product_": RULE_ATTENTION}  # the fused attention kernels (flash, math, ...)


def aten_ban(name: str) -> Ban | None:
    """The ban an operator name falls under, or None."""
    rule = _ATEN_RULES.get(name) or next((r for p, r in ATEN_PREFIXES.items() if name.startswith(p)), None)
    if rule is None:
        return None
    return Ban(
        f"aten::{name}",
        f"aten::{name}",
        rule,
        IN_LABEL_SMOOTHING if rule == RULE_LOSS else ANYWHERE,
        ("model",) if rule == RULE_TRANSFORMER else (),
    )


class BannedCallError(RuntimeError):
    """Student code called a building block that the assignment puts off limits."""


_installed = False
_armed: list = []  # (owner, attribute, wrapper, ban) for every tripwire in place


def _skip_dirs() -> tuple[str, ...]:
    """Code that is neither the student's nor the caller we judge: PyTorch, the packages
    installed next to it, the standard library, this file. A walk up the stack steps over it."""
    import torch

    torch_dir = os.path.dirname(os.path.abspath(torch.__file__))
    dirs = {torch_dir + os.sep, os.path.dirname(torch_dir) + os.sep, os.path.abspath(__file__)}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            dirs.add(os.path.abspath(path) + os.sep)
    return tuple(dirs)


def _trusted_dir() -> str:
    """The grader code that may call anything: the worker's copy of ``grader`` (this file is
    ``<code root>/grader/sandbox/tripwires.py``)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def install(student_dir: str, on_violation) -> None:
    """Wrap every banned callable. ``on_violation(dict)`` is told about each offending call."""
    global _installed
    if _installed:
        return
    _installed = True
    import torch

    student_dir = os.path.abspath(student_dir) + os.sep
    submission_root = os.path.dirname(student_dir.rstrip(os.sep))
    skip = _skip_dirs()
    trusted = _trusted_dir()

    def path_of(code) -> str:
        filename = code.co_filename
        return filename if filename.startswith("<") else os.path.abspath(filename)

    def stepped_over(path: str) -> bool:
        return path.startswith(skip) or path.startswith("<frozen")

    def in_label_smoothing(frames) -> bool:
        """Whether the call happens inside a ``LabelSmoothingLoss`` — its methods in
        training.py, or any frame (torch's ``Module.__call__`` included) working on an
        instance of it, so that a ``forward`` built with ``exec`` is inside it too."""
        for frame in frames:
            code = frame.f_code
            if os.path.basename(code.co_filename) == "training.py" and getattr(
                code, "co_qualname", code.co_name
            ).startswith("LabelSmoothingLoss"):
                return True
            if "self" in code.co_varnames[: max(code.co_argcount, 1)]:
                try:
                    owner = frame.f_locals.get("self")
                    if any(c.__name__ == "LabelSmoothingLoss" for c in type(owner).__mro__):
                        return True
                except Exception:
                    continue
        return False

    def offending_frames(scope: str):
        """The student frames on the stack if this call is a violation, else None.

        Walking outwards from the call, PyTorch, installed packages and the standard library
        are stepped over; the first other frame decides: the worker's own grader code may
        call anything, every other frame is the student's (their files, and code they
        compiled under any name). No such frame at all — a thread started on the banned
        function itself — is the student's too."""
        frame = sys._getframe(2)
        first = None
        frames = []
        students = []
        while frame is not None:
            path = path_of(frame.f_code)
            if not stepped_over(path):
                if first is None:
                    first = path
                if not path.startswith(trusted):
                    students.append(frame)
            frames.append(frame)
            frame = frame.f_back
        if first is not None and first.startswith(trusted):
            return None  # called by the grader's own code: allowed
        if scope == IN_LABEL_SMOOTHING and not in_label_smoothing(frames):
            return None
        return students

    def where(code) -> str:
        path = path_of(code)
        if path.startswith(student_dir):
            return os.path.relpath(path, submission_root).replace(os.sep, "/")
        return path if path.startswith("<") else os.path.basename(path)

    def check(ban: Ban) -> None:
        students = offending_frames(ban.scope)
        if students is None:
            return
        innermost = students[0] if students else None
        on_violation(
            {
                "call": ban.label,
                "rule": ban.rule,
                "file": where(innermost.f_code) if innermost else "transformer/",
                "line": innermost.f_lineno if innermost else 0,
                "function": getattr(innermost.f_code, "co_qualname", innermost.f_code.co_name) if innermost else "",
                "student_files": [where(f.f_code) for f in students],
                "extra_parts": list(ban.extra_parts),
            }
        )
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
    _watch_operators(check)


def _ban_of(func) -> Ban | None:
    """The ATen ban a callable seen by ``OperatorWatch`` falls under, or None."""
    import torch

    if isinstance(func, torch._ops.OpOverload):
        namespace, _, name = func._schema.name.partition("::")
    elif isinstance(func, torch._ops.OpOverloadPacket):
        namespace, _, name = func._qualified_op_name.partition("::")
    else:
        namespace, name = "aten", getattr(func, "__name__", None)
    if namespace != "aten" or not isinstance(name, str):
        return None
    return aten_ban(name)


def _watch_operators(check) -> None:
    """Enter ``OperatorWatch`` for the rest of this thread's life (see the module's docstring)."""
    global _watch
    from torch.overrides import TorchFunctionMode

    verdicts: dict = {}  # callable -> Ban | None, decided once per callable

    class OperatorWatch(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            try:
                ban = verdicts[func]
            except KeyError:
                ban = verdicts[func] = _ban_of(func)
            except TypeError:  # an unhashable callable
                ban = _ban_of(func)
            if ban is not None:
                check(ban)
            return func(*args, **(kwargs or {}))

    _watch = OperatorWatch()
    _watch.__enter__()


_watch = None
WATCH_BAN = Ban("torch.overrides.TorchFunctionMode", "the operator watch", RULE_WATCH)


def check_integrity() -> list[Ban]:
    """The bans whose tripwire was removed or replaced since the last check (re-armed now).

    The worker calls this after every request: code that puts the original function back to
    call it unobserved is caught by its side effect, even if it hides the call itself.
    """
    tampered = []
    if _watch is not None:
        import torch

        try:
            stack = torch.overrides._get_current_function_mode_stack()
            watching = any(mode is _watch for mode in stack) and torch._C._is_torch_function_mode_enabled()
        except Exception:
            watching = False
        if not watching:
            tampered.append(WATCH_BAN)
            try:
                while torch._C._len_torch_function_stack():  # whatever is there now is not ours
                    torch._C._pop_torch_function_stack()
                _watch.__enter__()
            except Exception:
                pass
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
