"""A static pass over the submission's source for the building blocks the assignment bans.

Threat: a student who imports ``nn.LayerNorm`` or ``F.scaled_dot_product_attention`` gets the
numbers right without doing the work. The run-time tripwires (``tripwires.py``, same rule
table) only see what the tests execute; this pass reads every file, without running it.

Names are resolved through the file's imports and simple assignments, so all of these are
``torch.nn.LayerNorm``::

    nn.LayerNorm(d)                     from torch.nn import LayerNorm as X; X(d)
    torch.nn.modules.normalization.LayerNorm
    getattr(torch.nn, "Layer" + "Norm")  (constant-foldable strings, f-strings, "".join)
    vars(F)["layer_norm"], F.__dict__["layer_norm"]
    importlib.import_module("torch.nn.functional").layer_norm

A *use* of a banned name is a ``banned`` finding, and so is tampering: reaching for
``__wrapped__``/``__closure__`` (the way around the run-time tripwires), ``gc`` referents, or
assigning to torch's attributes (monkeypatching). Importing a banned name without using it,
and dynamic machinery (``importlib``, ``__import__``, ``exec``/``eval``/``compile``, ``getattr`` with a
computed name on torch, ``torch.ops``/``torch._C``, ``sys.modules``, frame inspection, ``ctypes``)
are ``suspicious`` — reported as flags for a human, not scored. A finding affects the part of the file it is
in (``attention.py`` -> ``attention``); a
helper file affects the parts whose modules import it; ``nn.Transformer*`` also affects
``model``; ``F.cross_entropy``/``nn.CrossEntropyLoss`` are banned only inside
``training.LabelSmoothingLoss`` (elsewhere in ``training.py`` they are suspicious).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

from grader.contract import MODULES as CONTRACT_MODULES
from grader.i18n import N_
from grader.results import Text, english
from grader.sandbox.tripwires import BANS_BY_PATH, IN_LABEL_SMOOTHING

DYNAMIC_CALLS = {"__import__", "exec", "eval", "compile"}
RULE_TAMPER = N_("reaches into the grader's checks or PyTorch's internals (tampering)")
TAMPER_ATTRIBUTES = {"__wrapped__", "__closure__"}  # the way back to a wrapped original
TAMPER_CALLS = {"gc.get_referents", "gc.get_referrers", "gc.get_objects"}
RULE_STACK = N_("inspects the call stack")
SUSPICIOUS_PATHS = {
    "sys.modules": N_("looks modules up behind the import system"),
    "sys._getframe": RULE_STACK,
    "inspect.currentframe": RULE_STACK,
    "inspect.stack": RULE_STACK,
    "ctypes": N_("calls C directly"),
}
RULE_IMPORTLIB = N_("imports modules by name at run time")
RULE_INTERNALS = N_("reaches PyTorch's internals directly")
RULE_DYNAMIC = N_("runs or imports code chosen at run time")
RULE_COMPUTED_NAME = N_("looks up a torch attribute by a computed name")
RULE_COMPUTED_MODULE = N_("looks up an attribute of a module or of the builtins by a computed name")
RULE_UNWATCHED = N_("runs code where the grader's run-time checks do not look (threads, TorchScript, custom operators)")
# Reached through which the run-time operator watch (tripwires.py) sees nothing.
UNWATCHED_MODULES = {"threading", "_thread", "multiprocessing", "concurrent"}
UNWATCHED_PATHS = ("torch.jit", "torch.library", "torch.compile", "torch._dynamo", "torch.multiprocessing")
INTERNAL_ATTRIBUTES = {"ops", "aten", "_C"}  # torch.ops.aten.*, torch._C.*: below the public API
RULE_MONKEYPATCH = N_("monkeypatches torch — {rule}")
KNOWN_RULES = {
    RULE_TAMPER,
    RULE_STACK,
    RULE_IMPORTLIB,
    RULE_INTERNALS,
    RULE_DYNAMIC,
    RULE_COMPUTED_NAME,
    RULE_COMPUTED_MODULE,
    RULE_UNWATCHED,
    *SUSPICIOUS_PATHS.values(),
}

# The tripwires' rules (tripwires.py imports nothing from the grader, so their translations are
# marked here; tests/selftest/test_grader.py checks that the two lists agree).
TRIPWIRE_RULES = (
    N_(
        "implement attention yourself (§3.2): PyTorch's built-in attention "
        "(F.scaled_dot_product_attention, F.multi_head_attention_forward, nn.MultiheadAttention) is off limits"
    ),
    N_("implement layer normalisation yourself (§3.1): nn.LayerNorm and F.layer_norm are off limits"),
    N_(
        "build the model from your own layers: nn.Transformer, nn.TransformerEncoder(Layer) "
        "and nn.TransformerDecoder(Layer) are off limits"
    ),
    N_(
        "build LabelSmoothingLoss from log_softmax (§5.4): F.cross_entropy and nn.CrossEntropyLoss "
        "are off limits inside it"
    ),
    N_(
        "the grader watches PyTorch's operators for the banned building blocks (layer normalisation, "
        "attention, cross-entropy); switching that watch off is tampering"
    ),
)
SEVERITIES = {"banned": N_("banned"), "suspicious": N_("suspicious")}
# How the worker words a removed tripwire (grader/sandbox/worker.py).
_REMOVED_TRIPWIRE = re.compile(
    r"the grader's check on (?P<call>.+) was removed or replaced \(tampering\) — (?P<rule>.+)", re.S
)


def rule_text(rule) -> str:
    """A rule (of a finding, or of a run-time violation reported by the worker) as a ``Text``
    in the student's language when it is one the grader knows; other text as it is."""
    if isinstance(rule, Text):
        return rule
    if rule in TRIPWIRE_RULES or rule in KNOWN_RULES:
        return Text(rule)
    removed = _REMOVED_TRIPWIRE.fullmatch(rule)
    if removed:
        return Text(
            N_("the grader's check on {call} was removed or replaced (tampering) — {rule}"),
            call=removed["call"],
            rule=rule_text(removed["rule"]),
        )
    return rule


@dataclass(frozen=True)
class Finding:
    file: str  # "transformer/normalization.py"
    line: int
    call: str  # what was found, e.g. "nn.LayerNorm"
    rule: str  # in English
    severity: str  # "banned" | "suspicious"
    parts: tuple[str, ...]
    rule_text: str | None = field(default=None, compare=False, repr=False)  # the rule as a Text

    def text(self) -> Text:
        """The finding as a ``Text`` (a flag: shown in the student's language, kept in English)."""
        fields = dict(
            severity=Text(SEVERITIES.get(self.severity, self.severity)),
            call=self.call,
            where=f"{self.file}:{self.line}",
            rule=self.rule_text or rule_text(self.rule),
        )
        if self.parts:
            return Text(
                N_("{severity}: {call} in {where} (part {parts}) — {rule}"), parts=", ".join(self.parts), **fields
            )
        return Text(N_("{severity}: {call} in {where} — {rule}"), **fields)

    def describe(self) -> str:
        """One line for a human, in the current language (English: ``banned: nn.LayerNorm in
        transformer/normalization.py:7 (part normalization) — ...``)."""
        return self.text()


def canonical(path: str) -> str:
    """Map the many spellings of one torch object to the name the rule table uses."""
    parts = path.split(".")
    if parts[:3] == ["torch", "nn", "modules"] and len(parts) >= 5:
        return "torch.nn." + parts[-1]
    if parts[:3] == ["torch", "_C", "_nn"] and len(parts) == 4:
        return "torch.nn.functional." + parts[3]
    return path


def fold(node) -> str | None:
    """The value of a constant string expression, or None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = fold(node.left), fold(node.right)
        return left + right if left is not None and right is not None else None
    if isinstance(node, ast.JoinedStr):
        pieces = []
        for value in node.values:
            if isinstance(value, ast.FormattedValue):
                value = value.value
            piece = fold(value)
            if piece is None:
                return None
            pieces.append(piece)
        return "".join(pieces)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "join"
        and len(node.args) == 1
        and isinstance(node.args[0], (ast.List, ast.Tuple))
    ):
        separator = fold(node.func.value)
        items = [fold(e) for e in node.args[0].elts]
        if separator is not None and all(i is not None for i in items):
            return separator.join(items)
    return None


class _FileScanner(ast.NodeVisitor):
    def __init__(self, filename: str, module: str):
        self.filename = filename
        self.module = module
        self.aliases: dict[str, str] = {}
        self.findings: list[tuple[int, str, Text, str, str]] = []  # line, call, rule, severity, module
        self.class_stack: list[str] = []

    # resolution -------------------------------------------------------------------------

    def resolve(self, node) -> str | None:
        if isinstance(node, ast.Name):
            if node.id == "__builtins__" and node.id not in self.aliases:
                return "builtins"
            return self.aliases.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value)
            if base is None:
                return None
            if node.attr == "__dict__":
                return base + ".__dict__"
            return f"{base}.{node.attr}"
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "getattr" and len(node.args) >= 2:
                base, name = self.resolve(node.args[0]), fold(node.args[1])
                return f"{base}.{name}" if base and name else None
            if isinstance(func, ast.Name) and func.id == "vars" and len(node.args) == 1:
                base = self.resolve(node.args[0])
                return base + ".__dict__" if base else None
            if isinstance(func, ast.Name) and func.id == "__import__" and node.args:
                name = fold(node.args[0])
                return name.split(".")[0] if name else None
            target = self.resolve(func)
            if target == "importlib.import_module" and node.args:
                return fold(node.args[0])
            return None
        if isinstance(node, ast.Subscript):
            if (
                isinstance(node.value, (ast.List, ast.Tuple))
                and isinstance(node.slice, ast.Constant)
                and type(node.slice.value) is int
                and -len(node.value.elts) <= node.slice.value < len(node.value.elts)
            ):
                return self.resolve(node.value.elts[node.slice.value])  # [torch][0]
            if isinstance(node.value, ast.Dict) and fold(node.slice) is not None:
                for key_node, value in zip(node.value.keys, node.value.values):
                    if key_node is not None and fold(key_node) == fold(node.slice):
                        return self.resolve(value)  # {"t": torch}["t"]
            base = self.resolve(node.value)
            key = fold(node.slice)
            if base and base.endswith(".__dict__") and key:
                return f"{base.removesuffix('.__dict__')}.{key}"
            if base == "builtins" and key:
                return f"builtins.{key}"  # __builtins__["exec"]
        return None

    # imports and aliases ------------------------------------------------------------------

    def collect_aliases(self, tree) -> None:
        for _ in range(3):  # a few rounds let `X = nn.LayerNorm` follow `from torch import nn`
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        if alias.asname:
                            self.aliases[alias.asname] = alias.name
                        else:
                            top = alias.name.split(".")[0]
                            self.aliases[top] = top
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    for alias in node.names:
                        if alias.name != "*":
                            self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    target = self.resolve(node.value)
                    if target and target.split(".")[0] in ("torch", "importlib", "builtins"):
                        self.aliases[node.targets[0].id] = target

    # findings -----------------------------------------------------------------------------

    def add(self, node, call: str, rule: str, severity: str) -> None:
        self.findings.append((getattr(node, "lineno", 0), call, rule_text(rule), severity, self.module))

    def check_path(self, node, path: str | None, imported: bool = False) -> None:
        if not path:
            return
        ban = BANS_BY_PATH.get(canonical(path))
        if ban is not None:
            if imported:
                self.add(node, ban.label, Text(N_("imports it — {rule}"), rule=rule_text(ban.rule)), "suspicious")
            elif ban.scope == IN_LABEL_SMOOTHING and not (
                self.module == "training" and "LabelSmoothingLoss" in self.class_stack
            ):
                if self.module == "training":
                    self.add(
                        node,
                        ban.label,
                        Text(
                            N_(
                                "used in training.py outside LabelSmoothingLoss — check that "
                                "the loss does not rely on it"
                            )
                        ),
                        "suspicious",
                    )
            else:
                self.add(node, ban.label, ban.rule, "banned")
            return
        first = path.split(".")
        if first[0] == "builtins" and len(first) >= 2:
            if first[1] in DYNAMIC_CALLS:
                self.add(node, f"{first[1]}()", RULE_DYNAMIC, "suspicious")
            elif first[1] == "__dict__":
                self.add(node, "builtins.__dict__", RULE_COMPUTED_MODULE, "suspicious")
        if any(path == p or path.startswith(p + ".") for p in UNWATCHED_PATHS):
            self.add(node, ".".join(first[:2]), RULE_UNWATCHED, "suspicious")
        if first[:2] in (["torch", "ops"], ["torch", "_C"]) and len(first) >= 3:
            self.add(node, ".".join(first[:3]), RULE_INTERNALS, "suspicious")
        if path in TAMPER_CALLS:
            self.add(node, path, RULE_TAMPER, "banned")
        for prefix, why in SUSPICIOUS_PATHS.items():
            if path == prefix or path.startswith(prefix + "."):
                self.add(node, prefix, why, "suspicious")

    def check_store(self, target) -> None:
        """Assigning to (or deleting) an attribute of torch is monkeypatching it."""
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self.check_store(element)
        elif isinstance(target, ast.Attribute):
            base = self.resolve(target.value)
            if base and base.split(".")[0] == "torch":
                self.add(
                    target, f"{base}.{target.attr} = ...", Text(RULE_MONKEYPATCH, rule=Text(RULE_TAMPER)), "banned"
                )

    def visit_Assign(self, node):
        for target in node.targets:
            self.check_store(target)
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        self.check_store(node.target)
        self.generic_visit(node)

    def visit_Delete(self, node):
        for target in node.targets:
            self.check_store(target)
        self.generic_visit(node)

    def visit_ClassDef(self, node):
        self.class_stack.append(node.name)
        self.generic_visit(node)
        self.class_stack.pop()

    def visit_ImportFrom(self, node):
        if node.level == 0 and node.module:
            for alias in node.names:
                self.check_path(node, f"{node.module}.{alias.name}", imported=True)
            if node.module.split(".")[0] == "importlib":
                self.add(node, "importlib", RULE_IMPORTLIB, "suspicious")
            if node.module.split(".")[0] in UNWATCHED_MODULES:
                self.add(node, node.module.split(".")[0], RULE_UNWATCHED, "suspicious")

    def visit_Import(self, node):
        for alias in node.names:
            if alias.name.split(".")[0] in UNWATCHED_MODULES:
                self.add(node, alias.name.split(".")[0], RULE_UNWATCHED, "suspicious")
            if alias.name.split(".")[0] == "importlib":
                self.add(node, "importlib", RULE_IMPORTLIB, "suspicious")
            if alias.name.split(".")[0] == "ctypes":
                self.add(node, "ctypes", SUSPICIOUS_PATHS["ctypes"], "suspicious")

    def visit_Call(self, node):
        func = node.func
        if isinstance(func, ast.Name) and func.id in DYNAMIC_CALLS and func.id not in self.aliases:
            self.add(node, f"{func.id}()", RULE_DYNAMIC, "suspicious")
        if isinstance(func, ast.Name) and func.id in ("getattr", "setattr", "delattr") and len(node.args) >= 2:
            name = fold(node.args[1])
            if name in TAMPER_ATTRIBUTES:
                self.add(node, name, RULE_TAMPER, "banned")
            target = self.resolve(node.args[0])
            if func.id != "getattr" and target and target.split(".")[0] == "torch":
                self.add(node, f"{func.id}({target}, ...)", Text(RULE_MONKEYPATCH, rule=Text(RULE_TAMPER)), "banned")
        if isinstance(func, ast.Name) and func.id == "getattr" and len(node.args) >= 2:
            base = self.resolve(node.args[0])
            name = fold(node.args[1])
            if base and base.startswith("torch") and name is None:
                self.add(node, f"getattr({base}, ...)", RULE_COMPUTED_NAME, "suspicious")
            elif base and name is None:  # a module (anything imported) or the builtins
                self.add(node, f"getattr({base}, ...)", RULE_COMPUTED_MODULE, "suspicious")
            if name in INTERNAL_ATTRIBUTES:
                self.add(node, f"getattr(..., {name!r})", RULE_INTERNALS, "suspicious")
        self.check_path(node, self.resolve(node))
        self.generic_visit(node)

    def visit_Attribute(self, node):
        if node.attr in TAMPER_ATTRIBUTES:
            self.add(node, node.attr, RULE_TAMPER, "banned")
        if (
            node.attr in INTERNAL_ATTRIBUTES
            and self.resolve(node) is None
            and not (node.attr == "ops" and isinstance(node.value, ast.Name))
        ):
            # torch.ops/torch._C reached through something the pass cannot name ([torch][0].ops.aten);
            # a plain ``x.ops`` may be the student's own attribute, ``x.ops.aten``/``x._C`` are not
            self.add(node, f"<expression>.{node.attr}", RULE_INTERNALS, "suspicious")
        self.check_path(node, self.resolve(node))
        self.generic_visit(node)

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Load):
            self.check_path(node, self.aliases.get(node.id))
            if node.id in DYNAMIC_CALLS and node.id not in self.aliases:  # run = exec; f(compile)
                self.add(node, f"{node.id}()", RULE_DYNAMIC, "suspicious")

    def visit_Subscript(self, node):
        self.check_path(node, self.resolve(node))
        self.generic_visit(node)


def _imports_of(tree, module: str) -> set[str]:
    """The package modules a file imports (relative or ``transformer.x``)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level >= 1 or (node.module or "").split(".")[0] == "transformer":
                base = (node.module or "") if node.level else (node.module or "").removeprefix("transformer")
                base = base.strip(".")
                if base:
                    found.add(base.split(".")[0])
                else:
                    found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("transformer."):
                    found.add(alias.name.split(".")[1])
    found.discard(module)
    return found


def scan_package(package_dir: Path, parts: set[str] | None = None) -> tuple[list[Finding], list[str]]:
    """Scan every ``.py`` file under ``package_dir``.

    Returns ``(findings, notes)``; notes are things worth telling the student that are not
    findings (a file that does not parse — the tests report that — or an ``__init__.py``
    with definitions the grader does not run).
    """
    parts = set(parts if parts is not None else CONTRACT_MODULES)
    package_dir = Path(package_dir)
    trees, raw, notes = {}, [], []
    for path in sorted(package_dir.rglob("*.py")):
        relative = "transformer/" + path.relative_to(package_dir).as_posix()
        module = path.relative_to(package_dir).with_suffix("").as_posix().replace("/", ".")
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"), filename=relative)
        except (SyntaxError, ValueError):
            continue  # the tests of that part report the syntax error
        trees[module] = tree
        if module == "__init__" and any(
            isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) for n in tree.body
        ):
            notes.append(
                Text(
                    N_(
                        "transformer/__init__.py defines functions or classes, but the grader does not run "
                        "__init__.py: put every part of the API in its own module"
                    )
                )
            )
        scanner = _FileScanner(relative, module)
        scanner.collect_aliases(tree)
        scanner.visit(tree)
        raw.extend((relative, *f) for f in scanner.findings)

    importers: dict[str, set[str]] = {}
    for module, tree in trees.items():
        for imported in _imports_of(tree, module.split(".")[0]):
            importers.setdefault(imported, set()).add(module.split(".")[0])

    def affected(module: str) -> set[str]:
        top = module.split(".")[0]
        if top in parts:
            return {top}
        seen, stack, result = {top}, [top], set()
        while stack:
            for user in importers.get(stack.pop(), ()):
                if user in parts:
                    result.add(user)
                elif user not in seen:
                    seen.add(user)
                    stack.append(user)
        return result

    findings, seen = [], set()
    for relative, line, call, rule, severity, module in raw:
        ban_parts = set(affected(module))
        ban = next((b for b in BANS_BY_PATH.values() if b.label == call), None)
        if ban is not None and severity == "banned":
            ban_parts.update(p for p in ban.extra_parts if p in parts)
        finding = Finding(relative, line, call, english(rule), severity, tuple(sorted(ban_parts)), rule_text=rule)
        key = (relative, line, call, severity)
        if key not in seen:
            seen.add(key)
            findings.append(finding)
    return findings, notes
