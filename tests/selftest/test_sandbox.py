"""The sandbox's pieces: the data-only codec, intake, the static check, and a real worker.

The worker tests use a small fake submission (not the reference) so that they can crash,
loop and call banned functions on purpose; they share one proxy where they can, because
every fresh worker imports torch (seconds).
"""

from __future__ import annotations

import collections
import pathlib
import textwrap
import time
import zipfile

import pytest
import torch
from torch import nn

from grader.sandbox import intake, protocol, static_check
from grader.sandbox.process import Limits
from grader.sandbox.proxy import SandboxedImplementation, StudentCodeError, TransportError, WorkerCrashed

ROOT = pathlib.Path(__file__).resolve().parents[2]


# --- codec ---------------------------------------------------------------------------------------
# The wire format byte by byte (forged headers, lying shapes, limits, deadlines): test_protocol.py.


def round_trip(value):
    return protocol.unpack(protocol.pack(value))


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return type(b) is torch.Tensor and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return type(b) is dict and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b and type(a) is type(b)


def test_codec_round_trips_plain_values():
    Pair = collections.namedtuple("Pair", ["missing_keys", "unexpected_keys"])
    value = {
        "numbers": (1, 2.5, float("inf"), True, None, "text"),
        "tensors": [
            torch.arange(12).view(3, 4)[:, 1:],
            torch.randn(2, 3, dtype=torch.float64),
            torch.ones(2, dtype=torch.bool),
        ],
        3: [torch.float64, torch.device("cpu"), slice(1, None, 2), torch.Size([2, 3])],
        "empty": {},
    }
    back = round_trip(value)
    assert same(back["numbers"], value["numbers"])
    assert same(back["tensors"], value["tensors"])
    assert back[3] == [torch.float64, torch.device("cpu"), slice(1, None, 2), (2, 3)]
    assert back["empty"] == {}
    transposed, nothing = round_trip([torch.randn(3, 4).t(), torch.empty(0, 3)])
    assert transposed.shape == (4, 3) and transposed.is_contiguous() and nothing.shape == (0, 3)  # dense copies
    pair = round_trip(Pair(["a"], []))
    assert pair.missing_keys == ["a"] and tuple(pair) == (["a"], [])


def test_decoded_tensors_are_plain_detached_copies():
    class Marked(torch.Tensor):
        pass

    parameter = nn.Parameter(torch.ones(3))
    marked = torch.zeros(2).as_subclass(Marked)
    for tensor in round_trip([parameter, marked, torch.ones(3, requires_grad=True)]):
        assert type(tensor) is torch.Tensor and not tensor.requires_grad


# --- intake ------------------------------------------------------------------------------------


def write_package(root: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_intake_accepts_a_nested_folder_and_drops_auto_run_files(tmp_path):
    write_package(
        tmp_path / "alice",
        {
            "transformer/__init__.py": "",
            "transformer/masks.py": "X = 1\n",
            "transformer/conftest.py": "",
            "transformer/sitecustomize.py": "",
            "transformer/notes.txt": "",
            "transformer/os.py": "",
        },
    )
    (tmp_path / "alice" / "transformer" / "link.py").symlink_to("/etc/passwd")
    submission = intake.prepare(tmp_path)
    try:
        assert sorted(submission.files) == ["transformer/__init__.py", "transformer/masks.py"]
        text = "\n".join(submission.warnings)
        for name in ("conftest.py", "sitecustomize.py", "link.py", "os.py", "not Python"):
            assert name in text
    finally:
        submission.cleanup()


def make_zip(path: pathlib.Path, entries: dict[str, str], symlink: str | None = None) -> pathlib.Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in entries.items():
            zf.writestr(name, text)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
    return path


def test_intake_accepts_a_zip_of_a_nested_folder(tmp_path):
    archive = make_zip(
        tmp_path / "bob.zip",
        {
            "bob/transformer/__init__.py": "",
            "bob/transformer/masks.py": "X = 1\n",
            "__MACOSX/bob/transformer/._masks.py": "junk",
            "bob/README.md": "hi",
        },
    )
    submission = intake.prepare(archive)
    try:
        assert sorted(submission.files) == ["transformer/__init__.py", "transformer/masks.py"]
        assert (submission.package_dir / "masks.py").read_text() == "X = 1\n"
    finally:
        submission.cleanup()


@pytest.mark.parametrize(
    "entries, symlink, reason",
    [
        ({"transformer/masks.py": "", "../evil": "x"}, None, "outside"),
        ({"transformer/masks.py": "", "transformer/../../evil.py": "x"}, None, "outside"),
        ({"/etc/evil.py": "x", "transformer/masks.py": ""}, None, "absolute"),
        ({"transformer/masks.py": ""}, "transformer/attention.py", "symbolic link"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink"],
)
def test_intake_rejects_unsafe_archives(tmp_path, entries, symlink, reason):
    archive = make_zip(tmp_path / "evil.zip", entries, symlink)
    with pytest.raises(intake.IntakeError, match=reason):
        intake.prepare(archive)
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()


def test_intake_explains_a_missing_package(tmp_path):
    (tmp_path / "readme.md").write_text("hi")
    with pytest.raises(intake.IntakeError, match="no transformer/ folder"):
        intake.prepare(tmp_path)


# --- static check ------------------------------------------------------------------------------


def test_static_check_passes_the_reference_and_the_stubs():
    for folder in ("solutions", "assignments"):
        findings, _ = static_check.scan_package(ROOT / folder / "transformer")
        assert findings == [], [f.describe() for f in findings]


def test_static_check_sees_through_aliases_and_computed_names(tmp_path):
    package = write_package(
        tmp_path / "transformer",
        {
            "normalization.py": """
            import torch
            from torch import nn
            import torch.nn.functional as F
            from torch.nn import LayerNorm as Sneaky
            import importlib
            def a(d): return nn.LayerNorm(d)
            def b(d): return Sneaky(d)
            def c(d): return getattr(torch.nn, "Layer" + "Norm")(d)
            def d(x): return getattr(F, f"layer_{'norm'}")(x, x.shape[-1:])
            def e(x): return vars(F)["layer_norm"]
            def f(d): return torch.nn.modules.normalization.LayerNorm(d)
        """,
            "helpers.py": (
                "import torch\ndef attend(q, k, v):\n"
                "    return torch.nn.functional.scaled_dot_product_attention(q, k, v)\n"
            ),
            "attention.py": "from .helpers import attend\n",
            "model.py": "from torch import nn\nStack = nn.TransformerEncoder\n",
            "training.py": """
            import torch.nn.functional as F
            class LabelSmoothingLoss:
                def forward(self, logits, target):
                    return F.cross_entropy(logits, target)
            def elsewhere(logits, target):
                return F.cross_entropy(logits, target)
        """,
        },
    )
    findings, _ = static_check.scan_package(package)
    banned = {(f.file.split("/")[-1], f.line, f.call, f.parts) for f in findings if f.severity == "banned"}
    suspicious = {(f.file.split("/")[-1], f.call) for f in findings if f.severity == "suspicious"}
    assert {line for name, line, *_ in banned if name == "normalization.py"} == {7, 8, 9, 10, 11, 12}
    assert ("helpers.py", 3, "F.scaled_dot_product_attention", ("attention",)) in banned
    assert ("model.py", 2, "nn.TransformerEncoder", ("model",)) in banned
    assert ("training.py", 5, "F.cross_entropy", ("training",)) in banned
    assert ("training.py", "F.cross_entropy") in suspicious  # outside LabelSmoothingLoss
    assert ("normalization.py", "importlib") in suspicious
    assert ("normalization.py", "nn.LayerNorm") in suspicious  # the import itself


# --- a real worker -----------------------------------------------------------------------------

FAKE_SUBMISSION = {
    "transformer/__init__.py": "raise RuntimeError('__init__.py is not run by the grader')\n",
    "transformer/masks.py": """
        import os, resource, sys, time
        import torch
        from torch import nn

        def double(x, *, twice=False):
            print("student output on stdout, which must not disturb the protocol")
            return x * (4 if twice else 2)

        def where_am_i():
            return {"cwd": os.getcwd(), "env": dict(os.environ), "isolated": sys.flags.isolated,
                    "address_space": resource.getrlimit(resource.RLIMIT_AS)[0],
                    "file_size": resource.getrlimit(resource.RLIMIT_FSIZE)[0],
                    "path": list(sys.path), "dtype": torch.get_default_dtype()}

        def fail(message):
            helper(message)

        def helper(message):
            raise ValueError(message)

        def hog():
            return torch.empty(2**40, dtype=torch.uint8)

        def big(size):
            return torch.zeros(size, dtype=torch.uint8)

        def leave(code):
            os._exit(code)

        def segfault():
            import ctypes
            ctypes.string_at(0)

        def spin():
            while True:
                pass

        def forge(kind):
            # the worker's next reply becomes a hand-made frame (the worker is compromised)
            import json, struct
            protocol = sys.modules["grader.sandbox.protocol"]
            real = protocol.write_message

            def message(body, tensors=(), data=b""):
                header = {"__metadata__": {"body": body}}
                for n, (dtype, shape, start, end) in enumerate(tensors):
                    header[str(n)] = {"dtype": dtype, "shape": shape, "data_offsets": [start, end]}
                raw = json.dumps(header).encode()
                return struct.pack("<Q", len(raw)) + raw + data

            def reply(value):
                return '{"__dict__":[["ok",true],["value",' + value + '],["violations",[]]]}'

            frames = {
                "fake-view": message(reply('{"__tensor__":0}'), [("F32", [3 << 28], 0, 1)], b"x"),
                "deep": message(reply("[" * 100000 + "]" * 100000)),
                "bad-error": message('{"__dict__":[["ok",false],["error",{"__dict__":[["frames",5]]}]]}'),
            }

            def forged(fd, payload, deadline=None):
                protocol.write_message = real
                if kind == "announce":
                    os.write(fd, struct.pack(">Q", 3 << 30))
                    time.sleep(60)
                frame = frames[kind]
                os.write(fd, struct.pack(">Q", len(frame)) + frame)

            protocol.write_message = forged
            return 0

        class Stack(nn.Module):
            def __init__(self, n):
                super().__init__()
                self.layers = nn.ModuleList(nn.Linear(2, 2) for _ in range(n))
                self.note = "stack"

            def forward(self, x):
                for layer in self.layers:
                    x = layer(x)
                return x

            def scaled(self, x, factor):
                return self(x) * factor
    """,
    "transformer/normalization.py": """
        import torch.nn.functional as F

        def norm(x):
            return F.layer_norm(x, x.shape[-1:])

        def sneaky(x):
            try:
                return norm(x)
            except Exception:
                return x
    """,
    "transformer/attention.py": "def broken(:\n",
}


@pytest.fixture(scope="module")
def fake_package(tmp_path_factory):
    root = write_package(tmp_path_factory.mktemp("fake"), FAKE_SUBMISSION)
    return root / "transformer"


@pytest.fixture(scope="module")
def sandbox(fake_package):
    impl = SandboxedImplementation(fake_package, "masks", Limits(call_s=30, threads=1), max_restarts=10)
    yield impl
    impl.close()


def test_worker_calls_functions_and_returns_plain_copies(sandbox):
    x = torch.arange(3.0)
    result = sandbox.masks.double(x, twice=True)
    assert type(result) is torch.Tensor and torch.equal(result, x * 4)
    torch.set_default_dtype(torch.float64)
    try:
        assert sandbox.masks.where_am_i()["dtype"] == torch.float64  # the judge's default dtype travels along
    finally:
        torch.set_default_dtype(torch.float32)


def test_worker_runs_isolated_with_limits(sandbox):
    info = sandbox.masks.where_am_i()
    assert info["isolated"] == 1
    assert not [k for k in info["env"] if k.startswith("PYTHON")]
    assert info["env"]["HOME"] == info["cwd"] and "grader-worker-" in info["cwd"]
    assert not info["cwd"].startswith(str(ROOT))
    assert str(ROOT) not in info["path"] and not any(p.startswith(str(ROOT / "grader")) for p in info["path"])
    assert 0 < info["address_space"] <= Limits().memory_bytes
    assert 0 < info["file_size"] <= Limits().file_bytes


def test_worker_keeps_modules_behind_handles(sandbox):
    stack = sandbox.masks.Stack(3)
    assert len(stack.layers) == 3
    assert stack.note == "stack" and stack.training is True
    assert stack.eval() is stack and stack.training is False
    assert stack.double() is stack
    layers = list(stack.layers)
    assert len(layers) == 3 and stack.layers[0] is layers[0]
    state = stack.state_dict()
    assert set(state) == {f"layers.{i}.{p}" for i in range(3) for p in ("weight", "bias")}
    assert all(t.dtype == torch.float64 for t in state.values())
    zeros = {k: torch.zeros_like(v) for k, v in state.items()}
    assert tuple(stack.load_state_dict(zeros)) == ([], [])
    assert torch.equal(stack(torch.ones(1, 2, dtype=torch.float64)), torch.zeros(1, 2, dtype=torch.float64))
    assert torch.equal(stack.scaled(torch.ones(1, 2, dtype=torch.float64), 3.0), torch.zeros(1, 2, dtype=torch.float64))
    assert len(dict(stack.named_parameters())) == 6 and len(stack.parameters()) == 6


def test_worker_runs_gradients_and_accepts_trusted_modules(sandbox):
    stack = sandbox.masks.Stack(1).double()
    (x_grad,), params = sandbox.gradients(stack, [torch.ones(4, 2, dtype=torch.float64)])
    assert x_grad.shape == (4, 2) and set(params) == {"layers.0.weight", "layers.0.bias"}
    linear = nn.Linear(2, 2).double()
    (grad,), _ = sandbox.gradients(sandbox.masks.double, [torch.ones(2, dtype=torch.float64)])
    assert torch.equal(grad, torch.full((2,), 2.0, dtype=torch.float64))
    (grad,), params = sandbox.gradients(nn.Sequential(linear, nn.ReLU()), [torch.ones(3, 2, dtype=torch.float64)])
    assert grad.dtype == torch.float64 and set(params) == {"0.weight", "0.bias"}
    with pytest.raises(TransportError, match="cannot send"):
        sandbox.masks.double(lambda: 0)


def test_student_exceptions_come_back_as_their_type_with_student_frames_only(sandbox):
    with pytest.raises(ValueError, match="bad input") as caught:
        sandbox.masks.fail("bad input")
    message = str(caught.value)
    assert isinstance(caught.value, StudentCodeError)
    assert 'File "transformer/masks.py"' in message and "in helper" in message
    assert "grader" not in message and "worker" not in message
    with pytest.raises(StudentCodeError, match="SyntaxError") as caught:
        sandbox.attention  # noqa: B018 — importing the broken module is the test
    assert 'File "transformer/attention.py", line 1' in str(caught.value)
    with pytest.raises(AttributeError):
        sandbox.masks.no_such_function  # noqa: B018 — the attribute access itself must raise


def test_running_out_of_memory_is_an_error_not_a_crash(sandbox):
    with pytest.raises(StudentCodeError, match="memory"):
        sandbox.masks.hog()
    assert sandbox.masks.double(1) == 2


def test_banned_calls_raise_and_are_recorded_even_when_caught(sandbox):
    with pytest.raises(StudentCodeError, match="F.layer_norm is off limits"):
        sandbox.normalization.norm(torch.ones(2, 3))
    assert torch.equal(sandbox.normalization.sneaky(torch.ones(2, 3)), torch.ones(2, 3))
    calls = {(v["call"], v["file"], v["function"]) for v in sandbox.violations}
    assert ("F.layer_norm", "transformer/normalization.py", "norm") in calls


def test_forged_replies_are_protocol_errors_charged_to_the_part(fake_package):
    impl = SandboxedImplementation(fake_package, "masks", Limits(call_s=20, threads=1), max_restarts=10)
    try:
        with pytest.raises(StudentCodeError, match="exceeds the 256 MiB limit"):  # a reply over the cap:
            impl.masks.big(257 << 20)  # a precise error, and the worker lives on
        assert impl.masks.double(2) == 4 and not impl.crashes
        for kind, reason in [
            ("fake-view", "do not match"),
            ("announce", "exceeds the"),
            ("deep", "nested too deeply"),
            ("bad-error", "malformed error"),
        ]:
            started = time.monotonic()
            with pytest.raises(WorkerCrashed, match=reason):
                impl.masks.forge(kind)
            assert time.monotonic() - started < 10, f"{kind}: the judge waited for a refused reply"
        assert len(impl.crashes) == 4
        assert impl.masks.double(2) == 4  # a fresh worker
    finally:
        impl.close()


def test_crashes_and_time_outs_are_reported_and_a_fresh_worker_takes_over(fake_package):
    impl = SandboxedImplementation(fake_package, "masks", Limits(call_s=3, threads=1), max_restarts=3)
    try:
        stack = impl.masks.Stack(1)
        with pytest.raises(WorkerCrashed, match="exited with status 7"):
            impl.masks.leave(7)
        with pytest.raises(WorkerCrashed, match="no longer exists"):
            stack(torch.ones(1, 2))
        with pytest.raises(WorkerCrashed, match="segmentation fault"):
            impl.masks.segfault()
        with pytest.raises(WorkerCrashed, match="ran out of time"):
            impl.masks.spin()
        assert impl.masks.double(2) == 4  # a fresh worker
        with pytest.raises(WorkerCrashed, match="exited"):
            impl.masks.leave(1)
        with pytest.raises(WorkerCrashed, match="crashed 4 times") as first:
            impl.masks.double(2)  # no more restarts: the part's remaining checks fail fast
        first.value.add_note("Failing test case: an earlier check")  # as hypothesis does
        with pytest.raises(WorkerCrashed, match="crashed 4 times") as later:
            impl.masks.double(3)
        assert not getattr(later.value, "__notes__", None), "an earlier check's notes leaked"
    finally:
        impl.close()
