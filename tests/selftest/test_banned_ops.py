"""Banned building blocks however they are reached (issue #14, "grades that cannot be forged").

The run-time side grades calls in a real worker: ATen operators reached through
``torch.ops.aten`` or ``torch._C``, code compiled under a made-up file name, a thread started on
the banned function itself, and switching the operator watch off. The static side checks that
dynamic code (``exec``/``compile``/``__import__`` however fetched, ``torch.ops`` through a
container, threads and TorchScript) is flagged for a human, and that the reference, the stubs
and the style variants stay clean. Each test starts one worker (seconds: it imports torch).
"""

from __future__ import annotations

import pathlib
import textwrap

import pytest
import torch

from grader.sandbox import static_check, tripwires
from grader.sandbox.process import Limits
from grader.sandbox.proxy import SandboxedImplementation, StudentCodeError

ROOT = pathlib.Path(__file__).resolve().parents[2]

STUDENT = """
import builtins
import threading

import torch
import torch.nn.functional as F
from torch import nn


def ops_native_layer_norm(x):
    return [torch][0].ops.aten.native_layer_norm(x, x.shape[-1:], None, None, 1e-5)[0]


def ops_layer_norm_overload(x):
    return torch.ops.aten.layer_norm.default(x, x.shape[-1:])


def ops_sdpa(q):
    return torch.ops.aten.scaled_dot_product_attention(q, q, q)


def ops_flash(q):
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, q, q)[0]


def ops_cross_entropy(logits, target):
    return torch.ops.aten.cross_entropy_loss(logits, target)  # outside LabelSmoothingLoss: allowed


SOURCE = "def forward(self, logits, target):\\n    return torch._C._nn.cross_entropy_loss(logits, target)\\n"


class LabelSmoothingLoss(nn.Module):
    pass


namespace = {"torch": torch}
getattr(builtins, "ex" + "ec")(getattr(builtins, "co" + "mpile")(SOURCE, "<loss>", "exec"), namespace)
LabelSmoothingLoss.forward = namespace["forward"]  # a forward that lives in no student file


def compiled_loss(logits, target):
    return LabelSmoothingLoss()(logits, target)


def thread_on_the_function(x):
    worker = threading.Thread(target=F.layer_norm, args=(x, x.shape[-1:]))
    worker.start()
    worker.join()
    return 0


def switch_off(x):
    while torch._C._len_torch_function_stack():
        torch._C._pop_torch_function_stack()
    return torch.ops.aten.layer_norm(x, x.shape[-1:])


def plain(x):
    return (x - x.mean(-1, keepdim=True)).softmax(-1) @ x.transpose(-2, -1)
"""


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    package = tmp_path_factory.mktemp("banned") / "transformer"
    package.mkdir()
    (package / "masks.py").write_text(STUDENT)
    impl = SandboxedImplementation(package, "masks", Limits(call_s=30, threads=1), max_restarts=3)
    yield impl
    impl.close()


def _calls(impl) -> dict[str, dict]:
    return {v["call"]: v for v in impl.violations}


@pytest.mark.parametrize(
    "function, call, args",
    [
        ("ops_native_layer_norm", "aten::native_layer_norm", "x"),
        ("ops_layer_norm_overload", "aten::layer_norm", "x"),
        ("ops_sdpa", "aten::scaled_dot_product_attention", "q"),
        ("ops_flash", "aten::_scaled_dot_product_flash_attention_for_cpu", "q"),
    ],
)
def test_aten_operators_are_banned_however_they_are_reached(sandbox, function, call, args):
    value = torch.randn(3, 4) if args == "x" else torch.randn(1, 2, 3, 4)
    with pytest.raises(StudentCodeError, match="is off limits here"):
        getattr(sandbox.masks, function)(value)
    violation = _calls(sandbox)[call]
    assert violation["file"] == "transformer/masks.py" and violation["function"] == function
    assert violation["rule"] in (tripwires.RULE_NORM, tripwires.RULE_ATTENTION)


def test_the_loss_kernel_is_banned_inside_label_smoothing_even_from_compiled_code(sandbox):
    logits, target = torch.randn(3, 5), torch.tensor([1, 2, 0])
    assert torch.is_tensor(sandbox.masks.ops_cross_entropy(logits, target))  # elsewhere: allowed
    assert "aten::cross_entropy_loss" not in _calls(sandbox)
    with pytest.raises(StudentCodeError, match="cross_entropy_loss is off limits"):
        sandbox.masks.compiled_loss(logits, target)
    violation = _calls(sandbox)["aten::cross_entropy_loss"]
    assert violation["file"] == "<loss>" and violation["rule"] == tripwires.RULE_LOSS
    assert "transformer/masks.py" in violation["student_files"]


def test_a_thread_started_on_the_banned_function_is_the_students_call(sandbox):
    sandbox.masks.thread_on_the_function(torch.randn(2, 3))
    violation = _calls(sandbox)["F.layer_norm"]
    assert violation["rule"] == tripwires.RULE_NORM and violation["line"] == 0


def test_switching_the_watch_off_is_tampering_and_the_watch_comes_back(sandbox):
    sandbox.masks.switch_off(torch.randn(2, 3))
    assert tripwires.WATCH_BAN.label in _calls(sandbox)
    with pytest.raises(StudentCodeError, match="native_layer_norm is off limits"):
        sandbox.masks.ops_native_layer_norm(torch.randn(2, 3))


def test_plain_operators_and_trusted_code_raise_nothing(sandbox):
    before = list(sandbox.violations)
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    assert sandbox.masks.plain(x).shape == (2, 3, 3)
    (grad,), _ = sandbox.gradients(sandbox.masks.plain, [x])  # backward run by grader.runtime
    assert grad.shape == x.shape
    assert sandbox.violations == before


# --- static: dynamic code is flagged for a human -----------------------------------------------


def _flags(tmp_path, source: str) -> set[tuple[int, str, str]]:
    package = tmp_path / "transformer"
    package.mkdir()
    (package / "masks.py").write_text(textwrap.dedent(source))
    findings, _ = static_check.scan_package(package)
    return {(f.line, f.call, f.severity) for f in findings}


def test_dynamic_code_is_flagged_however_it_is_fetched(tmp_path):
    flags = _flags(
        tmp_path,
        """
        import builtins
        import threading
        import torch
        run = getattr(builtins, "ex" + "ec")
        build = builtins.__dict__["comp" + "ile"]
        table = vars(builtins)
        e = __builtins__["eval"]
        f = __builtins__.__import__
        name = "exec"
        g = getattr(builtins, name)
        h = getattr(torch.nn, name)
        k = [torch][0].ops.aten.native_layer_norm
        stash = [torch]
        m = stash[0].ops.aten.layer_norm
        n = getattr(stash[0], "o" + "ps")
        s = torch.jit.script
        alias = compile
    """,
    )
    expected = {
        (5, "exec()"),
        (6, "compile()"),
        (7, "builtins.__dict__"),
        (8, "eval()"),
        (9, "__import__()"),
        (11, "getattr(builtins, ...)"),
        (12, "getattr(torch.nn, ...)"),
        (13, "torch.ops.aten"),
        (15, "<expression>.aten"),
        (16, "getattr(..., 'ops')"),
        (17, "torch.jit"),
        (18, "compile()"),
        (3, "threading"),
    }
    assert expected <= {(line, call) for line, call, severity in flags if severity == "suspicious"}, flags
    assert not [f for f in flags if f[2] == "banned"]


@pytest.mark.parametrize(
    "folder", ["solutions", "assignments", *sorted(p.name for p in (ROOT / "tests/selftest/variants").iterdir())]
)
def test_the_reference_the_stubs_and_the_variants_raise_no_flags(folder):
    base = ROOT / folder if folder in ("solutions", "assignments") else ROOT / "tests/selftest/variants" / folder
    findings, _ = static_check.scan_package(base / "transformer")
    assert findings == [], [str(f.describe()) for f in findings]
