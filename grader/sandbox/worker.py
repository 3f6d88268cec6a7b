"""The sandboxed worker: the only process that ever imports a student's ``transformer`` package.

The judge (``process.py``) starts it as ``python -I -B worker.py ...`` from a *copy* of the
worker's code in a fresh temporary directory (its own session, scrubbed environment,
resource limits, possibly an unprivileged user), with two dedicated pipes. It then answers
requests until the request pipe closes:

    judge  --request-->  worker: {"op": "call", "target": {"__handle__": [3]}, "args": [...], ...}
    judge  <--response-- worker: {"ok": true, "value": ..., "violations": [...]}

The worker evaluates; it never judges. Expected values, comparisons and scores live in the
judge, which only ever receives plain data (``protocol.py``). Objects that cannot travel as
data (modules, classes, functions, arbitrary student objects) stay here in a handle table and
the judge refers to them as ``{"__handle__": [id]}``.

Trust boundary inside this process: everything before the first student import is trusted
(tripwires, the package stub, the handle table). Once student code has run, this process is
assumed compromised — which is why the judge validates every reply and times every call.

Imports: the standard library, torch, this directory's siblings ``protocol`` and
``tripwires``, ``grader.contract``; trusted helpers from the copied ``grader.runtime`` (and the translation job).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import linecache
import os
import random
import sys
import traceback
import types

# Dotted names of trusted functions the judge may run here with plain data (``call_trusted``).
TRUSTED_CALLS = ("grader.translation.job:run",)
MAX_MESSAGE_CHARS = 4000
MAX_ITEMS = 100_000  # when materialising iterators (named_parameters() etc.)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--request-fd", type=int, required=True)
    parser.add_argument("--response-fd", type=int, required=True)
    parser.add_argument("--code-root", required=True)
    parser.add_argument("--package-dir", required=True)
    parser.add_argument("--part", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--extra-path",
        action="append",
        default=[],
        help="site-packages to use (when this is not the judge's own interpreter)",
    )
    args = parser.parse_args()

    sys.dont_write_bytecode = True
    os.umask(0o077)
    for path in reversed(args.extra_path):
        import site

        site.addsitedir(path)  # processes its .pth files, appends it ...
        sys.path.remove(path)
        sys.path.insert(0, path)  # ... but it must win over the system's own packages
    sys.path.insert(0, os.path.abspath(args.code_root))  # trusted copies: grader.sandbox/runtime/...
    import torch

    from grader.contract import MODULES
    from grader.sandbox import protocol, tripwires

    torch.set_num_threads(max(1, args.threads))
    worker = Worker(protocol, tripwires, MODULES, os.path.abspath(args.package_dir), args.part)
    worker.serve(args.request_fd, args.response_fd)


class Worker:
    def __init__(self, protocol, tripwires, modules: tuple[str, ...], package_dir: str, part: str):
        import torch

        self.torch = torch
        self.protocol = protocol
        self.modules = modules  # the contract's module names: the only ones a test may ask for
        self.package_dir = package_dir
        self.submission_root = os.path.dirname(package_dir)
        self.part = part
        self.handles: dict[int, object] = {}
        self.ids: dict[int, int] = {}  # id(obj) -> handle; objects stay alive in self.handles
        self.next_handle = 1
        self.epoch = None
        self.violations: list[dict] = []
        self.seen_violations: set = set()
        tripwires.install(package_dir, self._record_violation)
        self.tripwires = tripwires
        self._install_package_stub()

    # --- the student's package -----------------------------------------------------------

    def _install_package_stub(self) -> None:
        """Register ``transformer`` as a package *without* running its ``__init__.py``.

        Each contract module is then imported on its own, so a syntax error in ``model.py`` or
        an ``__init__.py`` that imports everything cannot take the masks tests down with it.
        Only the package directory is searchable: nothing in the submission becomes a
        top-level module that could shadow the standard library or torch.
        """
        spec = importlib.machinery.ModuleSpec("transformer", None, is_package=True)
        spec.submodule_search_locations = [self.package_dir]
        package = types.ModuleType("transformer")
        package.__spec__ = spec
        package.__path__ = [self.package_dir]
        package.__package__ = "transformer"
        package.__file__ = os.path.join(self.package_dir, "__init__.py")
        sys.modules["transformer"] = package

    def _record_violation(self, violation: dict) -> None:
        key = (violation["call"], violation["file"], violation["line"])
        if key not in self.seen_violations:
            self.seen_violations.add(key)
            self.violations.append(violation)

    def check_tripwires(self) -> None:
        """A tripwire that was taken away during the request is a violation of its ban."""
        try:
            tampered = self.tripwires.check_integrity()
        except Exception:
            return
        for ban in tampered:
            self._record_violation(
                {
                    "call": ban.label,
                    "rule": f"the grader's check on {ban.label} was removed or replaced (tampering) — {ban.rule}",
                    "file": "transformer/",
                    "line": 0,
                    "function": "",
                    "student_files": [],
                    "extra_parts": [self.part, *ban.extra_parts],
                }
            )

    # --- handles ---------------------------------------------------------------------------

    def handle_of(self, obj) -> int:
        key = id(obj)
        if key in self.ids:
            return self.ids[key]
        number = self.next_handle
        self.next_handle += 1
        self.handles[number] = obj
        self.ids[key] = number
        return number

    def release(self, numbers) -> None:
        for number in numbers:
            obj = self.handles.pop(number, None)
            if obj is not None:
                self.ids.pop(id(obj), None)

    def encode_other(self, obj):
        """Anything that is not plain data stays here; the judge gets a reference."""
        torch = self.torch
        if type(obj).__module__ == "numpy" and hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:
            return self.protocol.to_wire(obj.item())  # numpy scalars behave like numbers
        if isinstance(obj, types.MethodType) and not isinstance(obj.__self__, type):
            return {"__method__": [self.handle_of(obj.__self__), obj.__func__.__name__]}
        if isinstance(obj, (types.GeneratorType, map, filter, zip, enumerate)):
            items = []
            for item in obj:
                items.append(item)
                if len(items) > MAX_ITEMS:
                    raise self.protocol.CodecError("iterator too long to send")
            return self.protocol.to_wire(items, self.encode_other)
        kind = (
            "module"
            if isinstance(obj, types.ModuleType)
            else ("class" if isinstance(obj, type) else ("nn.Module" if isinstance(obj, torch.nn.Module) else "object"))
        )
        name = getattr(obj, "__name__", None) if kind in ("module", "class") else type(obj).__name__
        if not isinstance(name, str):
            name = type(obj).__name__
        return {"__handle__": [self.handle_of(obj), name[:100], kind, callable(obj)]}

    def decode_tag(self, tag, payload, decode):
        if tag == "__handle__":
            number = payload[0] if type(payload) is list and payload else None
            if type(number) is not int or number not in self.handles:
                raise self.protocol.CodecError("unknown handle (the object was released or lived in another worker)")
            return self.handles[number]
        if tag == "__method__":
            number, name = payload
            return getattr(self.handles[number], name)
        if tag == "__trusted__":
            return self.build_trusted(payload, decode)
        raise self.protocol.CodecError(f"unknown tag {tag!r:.40}")

    def build_trusted(self, payload, decode):
        """Re-create a trusted module sent by the judge (never a student class)."""
        nn = self.torch.nn
        type_name, init, state, training, children = payload
        init = decode(init)
        if type_name == "torch.nn.Sequential":
            module = nn.Sequential(*[decode(child) for child in children])
        elif type_name.startswith("toys."):
            import grader.runtime.toys as toys

            cls = getattr(toys, type_name.removeprefix("toys."), None)
            if not (isinstance(cls, type) and issubclass(cls, nn.Module) and cls.__module__ == toys.__name__):
                raise self.protocol.CodecError(f"unknown toy module {type_name!r:.60}")
            module = cls(**init)
        else:
            classes = {
                "torch.nn.Dropout": nn.Dropout,
                "torch.nn.Linear": nn.Linear,
                "torch.nn.Identity": nn.Identity,
                "torch.nn.ReLU": nn.ReLU,
                "torch.nn.Tanh": nn.Tanh,
            }
            if type_name not in classes:
                raise self.protocol.CodecError(f"{type_name!r:.60} is not a trusted module")
            module = classes[type_name](**init)
        state = decode(state)
        if state:
            module.load_state_dict(state, assign=True)  # assign: keep the judge's dtypes
        module.train(bool(training))
        return module

    # --- serving ---------------------------------------------------------------------------

    def serve(self, request_fd: int, response_fd: int) -> None:
        protocol = self.protocol
        self.send(response_fd, {"ok": True, "value": {"pid": os.getpid(), "torch": self.torch.__version__}})
        while True:
            try:
                data = protocol.read_message(request_fd)
            except EOFError:
                return
            op = None
            try:
                request = protocol.unpack(data, self.decode_tag)
                del data
                op = request.get("op") if isinstance(request, dict) else None
                response = {"ok": True, "value": self.dispatch(request)}
            except BaseException as error:
                response = {"ok": False, "error": self.describe(error)}
            self.check_tripwires()
            response["violations"], self.violations = self.violations, []
            self.send(response_fd, response, op)

    def send(self, fd: int, response: dict, op: str | None = None) -> None:
        """Reply within the limits the judge reads with: a reply it would refuse becomes an error."""
        try:
            data = self.protocol.pack(response, self.encode_other, self.protocol.reply_limits(op))
        except BaseException as error:
            data = self.protocol.pack(
                {
                    "ok": False,
                    "error": {
                        "type": "TransportError",
                        "builtin": "TypeError",
                        "frames": [],
                        "message": "what your code returned cannot be sent back to the grader: "
                        f"{type(error).__name__}: {self._safe_str(error)}",
                    },
                    "violations": response.get("violations", []),
                }
            )
        self.protocol.write_message(fd, data)

    def apply_context(self, context: dict) -> None:
        """Mirror the judge's per-test global state: seed, default dtype, grad mode."""
        torch = self.torch
        if context.get("epoch") != self.epoch:  # a new test began in the judge
            self.epoch = context.get("epoch")
            torch.manual_seed(0)
            random.seed(0)
            torch.set_grad_enabled(True)
            if "numpy" in sys.modules:
                sys.modules["numpy"].random.seed(0)
        dtype = context.get("dtype")
        if dtype is not None and torch.get_default_dtype() != dtype:
            torch.set_default_dtype(dtype)

    def dispatch(self, request: dict):
        self.release(request.get("release", ()))
        self.apply_context(request.get("context", {}))
        op = request["op"]
        if op == "module":
            name = request["name"]
            if name not in self.modules:
                raise AttributeError(f"the API contract has no module {name!r}")
            return importlib.import_module(f"transformer.{name}")
        if op == "call":
            return request["target"](*request.get("args", ()), **request.get("kwargs", {}))
        if op == "call_method":
            return getattr(request["target"], request["name"])(*request.get("args", ()), **request.get("kwargs", {}))
        if op == "getattr":
            return getattr(request["target"], request["name"])
        if op == "setattr":
            setattr(request["target"], request["name"], request["value"])
            return None
        if op == "getitem":
            return request["target"][request["key"]]
        if op == "len":
            return len(request["target"])
        if op == "bool":
            return bool(request["target"])
        if op == "iter":
            items = []
            for item in request["target"]:
                items.append(item)
                if len(items) > MAX_ITEMS:
                    raise ValueError("too many items to iterate over")
            return items
        if op == "gradients":
            from grader.runtime.gradients import gradients

            return gradients(request["fn"], request["args"], request.get("upstream"))
        if op == "trusted":
            name = request["name"]
            if name not in TRUSTED_CALLS:
                raise PermissionError(f"{name!r} is not a trusted call")
            module_name, _, function_name = name.partition(":")
            return getattr(importlib.import_module(module_name), function_name)(request["payload"])
        if op == "ping":
            return "pong"
        raise ValueError(f"unknown op {op!r}")

    # --- errors ----------------------------------------------------------------------------

    @staticmethod
    def _safe_str(error) -> str:
        try:
            return str(error)[:MAX_MESSAGE_CHARS]
        except BaseException:
            return "<the exception's message could not be read>"

    def _relative(self, path: str) -> str:
        return os.path.relpath(path, self.submission_root).replace(os.sep, "/")

    def describe(self, error: BaseException) -> dict:
        """Type, message and the student's own frames — never the worker's internals."""
        builtin = next(
            (c.__name__ for c in type(error).__mro__ if c.__module__ == "builtins" and issubclass(c, Exception)),
            "Exception",
        )
        if isinstance(error, self.protocol.CodecError):
            builtin = "TypeError"
        message = self._safe_str(error).replace(self.package_dir + os.sep, "transformer/")
        frames = []
        for frame in traceback.extract_tb(error.__traceback__):
            if os.path.abspath(frame.filename).startswith(self.package_dir + os.sep):
                line = frame.line or linecache.getline(frame.filename, frame.lineno).strip()
                frames.append([self._relative(frame.filename), frame.lineno or 0, frame.name, line[:300]])
        if (
            isinstance(error, SyntaxError)
            and error.filename
            and os.path.abspath(error.filename).startswith(self.package_dir)
        ):
            text = (error.text or "").rstrip("\n")
            frames.append([self._relative(error.filename), error.lineno or 0, "<module>", text[:300]])
            message = error.msg
        return {"type": type(error).__name__[:100], "builtin": builtin, "message": message, "frames": frames[-8:]}


if __name__ == "__main__":
    main()
