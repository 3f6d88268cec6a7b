"""``SandboxedImplementation``: the ``impl`` fixture's second transport.

The test suite reaches student code only as ``impl.<module>.<name>`` (see the contract in
``tests/support/implementation.py``). In ``make check`` that is the imported package; under
``python -m grader grade`` it is this proxy, and every operation becomes a request to a
sandboxed worker process (``worker.py``)::

    impl.attention                          -> {"op": "module", "name": "attention"}     -> handle
    impl.attention.MultiHeadAttention       -> {"op": "getattr", ...}                    -> handle (cached)
    impl.attention.MultiHeadAttention(8, 2) -> {"op": "call", ...}                       -> handle
    mha(q, k, v, mask)                      -> {"op": "call", ...}                       -> tensor copy
    mha.w_q.weight / mha.attn_weights       -> {"op": "getattr", ...}                    -> tensor copy
    mha.load_state_dict(sd) / mha.eval()    -> {"op": "call_method", ...}
    impl.gradients(mha, [x, x, x])          -> {"op": "gradients", ...}  (backprop runs in the worker)

What the test process holds are ``Remote`` handles and plain tensor copies; nothing it
receives can run code (``protocol.py``). Student exceptions come back as data and are
re-raised here as ``StudentCodeError`` — also an instance of the student's builtin exception
class, so ``pytest.raises(ValueError)`` works across both transports — whose message is what
the student sees: the exception and the frames in *their* files, no grader internals.

A worker that dies (segfault, ``os._exit``, memory, time-out) raises ``WorkerCrashed`` for the
request in flight; the next request starts a fresh worker (handles from the dead one raise),
up to ``max_restarts`` times per part, after which the part's remaining checks fail fast.

Messages a student reads (their exception, a crash, a time-out) are in the grading language
(``grader.i18n``); messages about a bug in a test (``TransportError``) stay in English.
"""

from __future__ import annotations

import builtins
import math
import re
import signal
import time
import weakref

import torch
from torch import nn

from grader.contract import MODULES as CONTRACT_MODULES
from grader.i18n import N_, _
from grader.results import Text
from grader.sandbox import protocol
from grader.sandbox.process import Limits, SandboxUser, WorkerProcess
from grader.sandbox.worker import TRUSTED_CALLS

MAX_SHOWN_FRAMES = 5
MAX_FIELD_CHARS = 4000
# Dunder names a test may legitimately read from a handle; all others stay local so that
# pytest/hypothesis introspection (``__array__``, ``__deepcopy__``, ...) never reaches the worker.
FORWARDED_DUNDERS = {"__name__", "__qualname__", "__doc__"}
# Methods every nn.Module has: no round trip needed to learn that they are methods.
MODULE_METHODS = {
    "forward",
    "train",
    "eval",
    "to",
    "double",
    "float",
    "half",
    "cpu",
    "state_dict",
    "load_state_dict",
    "named_parameters",
    "parameters",
    "named_buffers",
    "buffers",
    "zero_grad",
    "children",
    "named_children",
    "modules",
    "named_modules",
    "requires_grad_",
}
SIMPLE_TRUSTED = {
    nn.Dropout: ("torch.nn.Dropout", lambda m: {"p": m.p, "inplace": m.inplace}),
    nn.Linear: (
        "torch.nn.Linear",
        lambda m: {"in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None},
    ),
    nn.Identity: ("torch.nn.Identity", lambda m: {}),
    nn.ReLU: ("torch.nn.ReLU", lambda m: {"inplace": m.inplace}),
    nn.Tanh: ("torch.nn.Tanh", lambda m: {}),
}


class StudentCodeError(Exception):
    """The student's code raised; ``str()`` is the student-facing message."""

    def __init__(self, message: str, type_name: str = "Exception", frames=()):
        Exception.__init__(self, message)
        self.message = message
        self.type_name = type_name
        self.frames = list(frames)

    def __str__(self) -> str:
        return self.message


class WorkerCrashed(Exception):
    """The worker process died or ran out of time while running the student's code."""


class SandboxError(Exception):
    """The sandbox itself failed (the worker could not start): a grader problem."""


class TransportError(TypeError):
    """A test tried to send something the sandboxed transport cannot carry (a test bug)."""


_error_classes: dict[str, type] = {}


def _error_class(builtin: str) -> type:
    """``StudentCodeError`` that is also the student's builtin exception class."""
    if builtin not in _error_classes:
        base = getattr(builtins, builtin, None) if isinstance(builtin, str) else None
        cls = StudentCodeError
        if isinstance(base, type) and issubclass(base, Exception) and base is not Exception:
            try:
                cls = type(f"StudentCode{base.__name__}", (StudentCodeError, base), {"__module__": __name__})
            except TypeError:
                cls = StudentCodeError
        _error_classes[builtin] = cls
    return _error_classes[builtin]


def _text(value, limit: int = MAX_FIELD_CHARS) -> str:
    return (value if isinstance(value, str) else repr(value))[:limit]


def format_student_error(error: dict, memory_limit: int | None = None) -> str:
    """The message a student sees: what their code raised and where, in their files."""
    type_name = _text(error.get("type"), 100)
    message = _text(error.get("message", ""))
    frames = [f for f in error.get("frames", []) if isinstance(f, (list, tuple)) and len(f) == 4]
    if type_name == "NotImplementedError":
        lines = [_("not implemented yet — {todo}", todo=message)]
        frames = frames[-1:]
    elif type_name == "BannedCallError":
        lines = [_("banned call — {message}", message=_banned_call(message))]
    else:
        lines = [_("your code raised {error}: {message}", error=type_name, message=message)]
    for file, line, function, code in frames[-MAX_SHOWN_FRAMES:]:  # as Python writes a traceback
        lines.append(f'  File "{_text(file, 200)}", line {line}, in {_text(function, 100)}')
        if code:
            lines.append(f"    {_text(code, 300)}")
    if memory_limit and (
        type_name == "MemoryError" or "can't allocate memory" in message or "not enough memory" in message
    ):
        limit = f"{memory_limit / 2**30:g}"
        lines.append("  " + _("hint: your code ran out of memory (limit: {limit} GiB)", limit=limit))
    return "\n".join(lines)


_BANNED_CALL = re.compile(r"(?P<call>[\w.]+) is off limits here: (?P<rule>.+)", re.S)


def _banned_call(message: str) -> str:
    """The tripwire's ``"<call> is off limits here: <rule>"`` (grader/sandbox/tripwires.py) in the
    student's language; any other text as it is."""
    from grader.sandbox.static_check import rule_text

    found = _BANNED_CALL.fullmatch(message)
    if not found:
        return message
    return _("{call} is off limits here: {rule}", call=found["call"], rule=rule_text(found["rule"]))


def crash_headline(worker: WorkerProcess, part: str) -> Text:
    """Why the worker is gone, as one sentence for the student: ``WorkerProcess.death()``'s
    cases (grader/sandbox/process.py), in the student's language."""
    code = worker.process.poll()
    fields = {"part": part}
    if worker.killed_by_us == "timeout":
        return Text(N_("your code ran out of time in part `{part}`"), **fields)
    if code is None:
        return Text(N_("your code stopped answering in part `{part}`"), **fields)
    if code < 0:
        number = -code
        if number == signal.SIGKILL:
            return Text(N_("your code was killed (most likely it ran out of memory) in part `{part}`"), **fields)
        if number == signal.SIGXCPU:
            return Text(
                N_("your code ran out of CPU time (limit: {limit} s) in part `{part}`"),
                limit=f"{worker.limits.cpu_s}",
                **fields,
            )
        if number == signal.SIGXFSZ:
            return Text(N_("your code wrote a file (or printed) more than the size limit in part `{part}`"), **fields)
        if number == signal.SIGSEGV:
            return Text(N_("your code crashed (segmentation fault) in part `{part}`"), **fields)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)
        return Text(N_("your code was killed by signal {signal} in part `{part}`"), signal=name, **fields)
    return Text(
        N_(
            "your code exited with status {status} in part `{part}` (does your code call sys.exit(), "
            "exit() or os._exit()?)"
        ),
        status=str(code),
        **fields,
    )


def student_error(error: dict, memory_limit: int | None = None) -> StudentCodeError:
    message = format_student_error(error, memory_limit)
    cls = _error_class(error.get("builtin", "Exception"))
    try:
        return cls(message, _text(error.get("type"), 100), error.get("frames", []))
    except Exception:  # an exotic builtin whose constructor refuses our arguments
        return StudentCodeError(message, _text(error.get("type"), 100), error.get("frames", []))


class Remote:
    """A reference to an object that lives in the worker (module, class, function, nn.Module)."""

    __slots__ = ("_sandbox", "_id", "_generation", "_type", "_kind", "_callable", "_cache", "__weakref__")

    def __init__(self, sandbox, number: int, generation: int, type_name: str, kind: str, is_callable: bool):
        object.__setattr__(self, "_sandbox", sandbox)
        object.__setattr__(self, "_id", number)
        object.__setattr__(self, "_generation", generation)
        object.__setattr__(self, "_type", type_name)
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_callable", is_callable)
        object.__setattr__(self, "_cache", {})

    def __repr__(self) -> str:
        return f"<sandboxed {self._type} #{self._id}>"

    def __del__(self):
        try:
            self._sandbox._released(self._id, self._generation)
        except Exception:
            pass

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__") and name not in FORWARDED_DUNDERS:
            raise AttributeError(name)
        cache = self._cache
        if name in cache:
            return cache[name]
        if self._kind == "nn.Module" and name in MODULE_METHODS:
            value = cache[name] = RemoteMethod(self, name)
            return value
        value = self._sandbox._request("getattr", target=self, name=name)
        if isinstance(value, RemoteMethod) or (self._kind in ("module", "class") and isinstance(value, Remote)):
            cache[name] = value  # methods, functions and classes do not change
        return value

    def __setattr__(self, name: str, value) -> None:
        self._cache.pop(name, None)
        self._sandbox._request("setattr", target=self, name=name, value=value)

    def __call__(self, *args, **kwargs):
        return self._sandbox._request("call", target=self, args=list(args), kwargs=kwargs)

    def __getitem__(self, key):
        return self._sandbox._request("getitem", target=self, key=key)

    def __len__(self) -> int:
        return self._sandbox._request("len", target=self)

    def __iter__(self):
        return iter(self._sandbox._request("iter", target=self))

    def __bool__(self) -> bool:
        return bool(self._sandbox._request("bool", target=self))


class RemoteMethod:
    """A bound method of a remote object; calling it is one request."""

    __slots__ = ("owner", "name")

    def __init__(self, owner: Remote, name: str):
        self.owner = owner
        self.name = name

    def __repr__(self) -> str:
        return f"<sandboxed method {self.owner._type}.{self.name}>"

    def __call__(self, *args, **kwargs):
        return self.owner._sandbox._request(
            "call_method", target=self.owner, name=self.name, args=list(args), kwargs=kwargs
        )


class SandboxedImplementation:
    """The implementation under test, running in a sandboxed worker (one per part).

    Args:
        package_dir: the intake copy of the submission's ``transformer/`` directory.
        part: the rubric part being graded (worker naming and messages).
        limits: resource limits and time-outs per worker.
        user: the unprivileged user to run as (``process.sandbox_user()``), or None.
        deadline: ``time.monotonic()`` value after which the part is out of time.
        epoch: returns a number that changes whenever a new test starts (the worker then
            reseeds its random generators, as the conftest does in-process).
        max_restarts: fresh workers allowed after crashes before the part's remaining checks
            fail without running.
        worker: an already started worker for this part (started early to overlap the
            ~3 s torch import with the previous part's tests).
    """

    transport = "sandboxed"

    def __init__(
        self,
        package_dir,
        part: str,
        limits: Limits | None = None,
        user: SandboxUser | None = None,
        deadline: float | None = None,
        epoch=None,
        max_restarts: int = 2,
        worker: WorkerProcess | None = None,
    ):
        self._package_dir = package_dir
        self._part = part
        self._limits = limits or Limits()
        self._user = user or SandboxUser(reason="not requested")
        self._deadline = deadline if deadline is not None else math.inf
        self._epoch = epoch or (lambda: 0)
        self._max_restarts = max_restarts
        self._worker = worker
        self._generation = 0
        self._restarts = 0
        self._remotes: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self._pending_release: list[int] = []
        self._modules: dict[str, Remote] = {}
        self._final: Exception | None = None  # once set, every request raises it
        self.violations: list[dict] = []
        self.crashes: list[str] = []
        self.requests = 0
        self.worker_stderr = ""

    # --- the contract's surface ----------------------------------------------------------

    def __getattr__(self, name: str):
        if name not in CONTRACT_MODULES:
            raise AttributeError(f"the API contract has no module {name!r} (modules: {', '.join(CONTRACT_MODULES)})")
        if name not in self._modules:
            self._modules[name] = self._request("module", name=name)
        return self._modules[name]

    def gradients(self, fn, args, upstream=None):
        """See ``grader.runtime.gradients.gradients``; runs in the worker."""
        return self._request("gradients", fn=fn, args=list(args), upstream=upstream)

    def call_trusted(self, name: str, payload):
        """Run a trusted function (``"module:function"`` from an allowlist) in the worker."""
        if name not in TRUSTED_CALLS:
            raise ValueError(f"{name!r} is not an allowed trusted call ({', '.join(TRUSTED_CALLS)})")
        return self._request("trusted", name=name, payload=payload)

    def stderr_tail(self, limit: int = 4096) -> str:
        """The last bytes of the running worker's stderr ("" when none runs); attacker-controlled,
        for display only (the translation job's progress, ``grader/translation/progress.py``).
        Safe to call from another thread while a request waits."""
        worker = self._worker
        return worker.output_tail("stderr", limit) if worker is not None else ""

    def __repr__(self) -> str:
        return f"<sandboxed implementation of {self._package_dir} for part {self._part}>"

    # --- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        if self._worker is not None:
            self.worker_stderr = self._worker.output_tail("stderr", 4096)
            self._worker.cleanup()
            self._worker = None

    def _ensure_worker(self) -> WorkerProcess:
        if self._worker is None:
            self._worker = WorkerProcess(self._package_dir, self._part, self._limits, self._user)
        worker = self._worker
        if not worker.greeted:
            try:
                hello = protocol.unpack(
                    worker.wait_ready(self._deadline), limits=protocol.REPLIES, deadline=self._deadline
                )
                if not (isinstance(hello, dict) and hello.get("ok")):
                    raise protocol.ProtocolError("bad hello")
            except Exception as error:  # time-out, EOF, a refused or malformed hello: it did not start
                tail = worker.output_tail("stderr", 2000).strip()
                worker.cleanup()
                self._worker = None
                self._final = SandboxError(
                    _(
                        "the sandbox worker for part `{part}` could not start ({error}): {output}",
                        part=self._part,
                        error=type(error).__name__,
                        output=tail[-1500:],
                    )
                )
                raise self._final from None
        return worker

    # --- requests --------------------------------------------------------------------------

    def _released(self, number: int, generation: int) -> None:
        if generation == self._generation:
            self._pending_release.append(number)

    def _request(self, op: str, **fields):
        if self._final is not None:
            # A fresh exception per check: re-raising one object would carry the notes that
            # hypothesis attached to an earlier check ("Failing test case: ...") into this one.
            raise type(self._final)(*self._final.args)
        if time.monotonic() >= self._deadline:
            self._final = WorkerCrashed(
                _("the time for part `{part}` is used up; its remaining checks were not run", part=self._part)
            )
            self.close()
            raise self._final
        message = {
            "op": op,
            **fields,
            "context": {"epoch": self._epoch(), "dtype": torch.get_default_dtype()},
            "release": self._pending_release,
        }
        payload = protocol.pack(message, self._encode_other)  # TransportError: a test bug
        self._pending_release = []
        worker = self._ensure_worker()
        self.requests += 1
        deadline = min(time.monotonic() + self._limits.call_s, self._deadline)
        limits = protocol.reply_limits(op)
        try:
            worker.send(payload, deadline)
            del payload
            # The reply is capped before it is read and checked before anything big is
            # allocated (protocol.py); decoding counts against the same deadline as the call.
            response = worker.receive_reply(deadline, limits, self._decode_tag)
            if not (isinstance(response, dict) and isinstance(response.get("ok"), bool)):
                raise protocol.CodecError("a reply without a status")
        except TimeoutError:
            self._crash(worker, "timeout")
        except (EOFError, OSError):
            self._crash(worker, None)
        except Exception as error:  # ProtocolError, and whatever else a forged reply provokes (MemoryError, ...)
            self._refused(worker, error)
        try:
            self._collect_violations(response.get("violations"))
        except Exception as error:  # a forged violations list
            self._refused(worker, error)
        if response["ok"]:
            return response.get("value")
        error = response.get("error")
        if not isinstance(error, dict):
            self._crash(
                worker, "protocol", Text(N_("your code sent back a malformed error in part `{part}`"), part=self._part)
            )
        try:
            raised = student_error(error, self._limits.memory_bytes)
        except Exception:  # fields of the wrong types
            self._crash(
                worker, "protocol", Text(N_("your code sent back a malformed error in part `{part}`"), part=self._part)
            )
        raise raised

    def _refused(self, worker: WorkerProcess, error: Exception):
        """A reply the judge cannot accept: the part is charged with a protocol error naming it."""
        if isinstance(error, protocol.ProtocolError):
            detail = str(error)
        else:
            detail = f"{type(error).__name__}: {error}"
        self._crash(
            worker,
            "protocol",
            Text(
                N_("your code sent back data the grader refuses ({error}) in part `{part}`"),
                error=detail[:300],
                part=self._part,
            ),
        )

    def _collect_violations(self, violations) -> None:
        if not isinstance(violations, list):
            return
        for v in violations[:100]:
            if isinstance(v, dict) and isinstance(v.get("call"), str) and isinstance(v.get("file"), str):
                clean = {
                    "call": _text(v["call"], 100),
                    "rule": _text(v.get("rule", ""), 400),
                    "file": _text(v["file"], 200),
                    "line": v.get("line") if isinstance(v.get("line"), int) else 0,
                    "function": _text(v.get("function", ""), 100),
                    "student_files": [_text(f, 200) for f in v.get("student_files", [])[:20] if isinstance(f, str)],
                    "extra_parts": [_text(p, 40) for p in v.get("extra_parts", [])[:5] if isinstance(p, str)],
                }
                if clean not in self.violations:
                    self.violations.append(clean)

    def _crash(self, worker: WorkerProcess, why: str | None, headline: Text | None = None):
        """The worker is unusable: kill it, explain, and prepare a fresh one for next time."""
        worker.kill(why or "crashed")
        headline = headline or crash_headline(worker, self._part)
        tail = worker.output_tail("stderr", 1200).strip()
        self.worker_stderr = worker.output_tail("stderr", 4096)
        worker.cleanup()
        self._worker = None
        self._generation += 1
        self._modules.clear()
        self._remotes = weakref.WeakValueDictionary()
        self._pending_release = []
        self._restarts += 1
        if why == "timeout":
            if time.monotonic() >= self._deadline:
                headline = Text(N_("{headline} (the time for this part is used up)"), headline=headline)
            else:
                headline = Text(
                    N_("{headline} (one call may take at most {limit} s — an endless loop?)"),
                    headline=headline,
                    limit=f"{self._limits.call_s:g}",
                )
        message = str(headline)
        if tail:
            message += "\n  " + _("last output of your code:") + "\n    " + "\n    ".join(tail.splitlines()[-8:])
        self.crashes.append(headline if "\n" not in headline else str(headline).splitlines()[0])
        if time.monotonic() >= self._deadline:
            self._final = WorkerCrashed(message + "\n  " + _("The remaining checks of this part were not run."))
        elif self._restarts > self._max_restarts:
            self._final = WorkerCrashed(
                message
                + "\n  "
                + _(
                    "Your code crashed {count} times in this part; its remaining checks were not run.",
                    count=self._restarts,
                )
            )
        raise WorkerCrashed(message)

    # --- codec hooks -----------------------------------------------------------------------

    def _check_alive(self, remote: Remote) -> None:
        if remote._sandbox is not self or remote._generation != self._generation:
            raise WorkerCrashed(
                _(
                    "this {type} was created before your code crashed in part `{part}`; it no longer exists",
                    type=remote._type,
                    part=self._part,
                )
            )

    def _encode_other(self, obj):
        if isinstance(obj, Remote):
            self._check_alive(obj)
            return {"__handle__": [obj._id]}
        if isinstance(obj, RemoteMethod):
            self._check_alive(obj.owner)
            return {"__method__": [obj.owner._id, obj.name]}
        if isinstance(obj, nn.Module):
            return self._encode_trusted(obj)
        raise TransportError(
            f"the sandboxed transport cannot send {type(obj).__name__} {obj!r:.80} to the student's code: "
            "tests may pass tensors, numbers, strings, None, lists/tuples/dicts of these, objects from impl, "
            "and trusted modules (see tests/support/implementation.py)"
        )

    def _encode_trusted(self, module: nn.Module):
        cls = type(module)
        training = bool(module.training)
        if cls is nn.Sequential:
            children = [self._encode_trusted(child) for child in module]
            return {
                "__trusted__": ["torch.nn.Sequential", protocol.to_wire({}), protocol.to_wire({}), training, children]
            }
        if cls in SIMPLE_TRUSTED:
            name, init = SIMPLE_TRUSTED[cls]
            init_kwargs = init(module)
        elif cls.__module__ == "grader.runtime.toys" and isinstance(getattr(module, "init_kwargs", None), dict):
            name, init_kwargs = f"toys.{cls.__name__}", module.init_kwargs
        else:
            raise TransportError(
                f"{cls.__name__} is not a trusted module: only nn.Dropout, nn.Linear, nn.Identity, "
                "nn.ReLU, nn.Tanh, nn.Sequential of these and grader.runtime.toys can be sent"
            )
        state = dict(module.state_dict())
        return {"__trusted__": [name, protocol.to_wire(init_kwargs), protocol.to_wire(state), training, []]}

    def _decode_tag(self, tag: str, payload, decode):
        if tag == "__handle__":
            if not (
                isinstance(payload, list)
                and len(payload) == 4
                and type(payload[0]) is int
                and type(payload[1]) is str
                and type(payload[2]) is str
                and type(payload[3]) is bool
            ):
                raise protocol.CodecError("malformed handle")
            return self._remote(payload[0], payload[1][:100], payload[2][:20], payload[3])
        if tag == "__method__":
            if not (
                isinstance(payload, list) and len(payload) == 2 and type(payload[0]) is int and type(payload[1]) is str
            ):
                raise protocol.CodecError("malformed method reference")
            owner = self._remotes.get(payload[0])
            if owner is None:
                owner = self._remote(payload[0], "object", "object", True)
            return RemoteMethod(owner, payload[1][:200])
        raise protocol.CodecError(f"unknown tag {tag!r:.40}")

    def _remote(self, number: int, type_name: str, kind: str, is_callable: bool) -> Remote:
        remote = self._remotes.get(number)
        if remote is None:
            if number in self._pending_release:  # the worker still knows it: keep it alive
                self._pending_release = [n for n in self._pending_release if n != number]
            remote = Remote(self, number, self._generation, type_name, kind, is_callable)
            self._remotes[number] = remote
        return remote
