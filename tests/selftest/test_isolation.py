"""The worker's namespaces (grader/sandbox/isolation.py): what a sandboxed process can see and do.

Most tests run a few lines of Python in the very sandbox a worker gets (``isolation.command``:
the same binds, namespaces, seccomp filter and, as root, ``setpriv`` to the grade's uid),
without torch, so they take a fraction of a second each. They skip where bubblewrap cannot
isolate (no ``bwrap``, user namespaces off) — except the fallback tests, which force the
fallback with ``GRADER_NO_BWRAP=1`` and check that the grader says so.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from grader.sandbox import isolation

ROOT = Path(__file__).resolve().parents[2]
IS_ROOT = os.geteuid() == 0
ENV = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
ENV.pop(isolation.DISABLE_ENV, None)
ENV.pop(isolation.EXTRA_BIND_ENV, None)


def _available() -> isolation.Isolation:
    if os.environ.get(isolation.DISABLE_ENV):
        pytest.skip(f"{isolation.DISABLE_ENV} is set: the fallback run")
    found = isolation.probe(ROOT)
    if not found.available:
        pytest.skip(f"no bubblewrap isolation here: {found.reason}")
    return found


def run_inside(
    code: str, code_dir: Path | None = None, submission_dir: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    """Run ``code`` with the worker's interpreter in the worker's sandbox; its stdout is JSON."""
    found = _available()
    empty = Path(tempfile.mkdtemp(prefix="isolation-test-"))
    fd = isolation.seccomp_fd()
    try:
        argv = [found.python, "-I", "-B", "-c", textwrap.dedent(code)]
        command = isolation.command(
            found, code_dir or empty, submission_dir or empty, fd, argv, {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
        )
        return subprocess.run(
            command, pass_fds=(fd,), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env={}
        )
    finally:
        os.close(fd)
        shutil.rmtree(empty, ignore_errors=True)


def inside(code: str, **kwargs) -> dict:
    done = run_inside(code, **kwargs)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_worker_sees_neither_the_repository_nor_the_grader():
    seen = inside(f"""
        import json, os, sys
        print(json.dumps({{"root": sorted(os.listdir("/")), "repo": os.path.exists({str(ROOT)!r}),
                          "repo_real": os.path.exists({os.path.realpath(ROOT)!r}),
                          "work": os.path.exists("/work"), "prefix": sys.prefix,
                          "sandbox": sorted(os.listdir("/sandbox")),
                          "modules": [m for m in sys.modules if m.split(".")[0] in ("grader", "tests")]}}))
    """)
    assert not seen["repo"] and not seen["repo_real"], seen
    assert seen["sandbox"] == ["code", "submission"], seen
    assert not seen["modules"], seen
    assert not str(ROOT).startswith(seen["prefix"] + "/") and seen["prefix"] != str(ROOT), seen
    assert not (set(seen["root"]) & {"work", "home", "autograder", "mnt", "srv", "opt"}), seen["root"]


def test_worker_cannot_read_another_grades_files():
    """A worker folder of another grade on the host, found by name or through /proc: not there."""
    other = Path(tempfile.mkdtemp(prefix="grader-worker-masks-"))
    try:
        (other / "submission" / "transformer").mkdir(parents=True)
        (other / "submission" / "transformer" / "masks.py").write_text("SECRET = 1\n")
        os.chmod(other, 0o755)
        seen = inside(f"""
            import glob, json, os
            target = {str(other)!r} + "/submission/transformer/masks.py"
            found = glob.glob("/tmp/grader-worker-*") + [target] * os.path.exists(target)
            for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
                for link in ("root", "cwd"):
                    found += [f"/proc/{{pid}}/{{link}}"] * os.path.exists(f"/proc/{{pid}}/{{link}}" + target)
            print(json.dumps({{"found": found, "pids": sorted(p for p in os.listdir("/proc") if p.isdigit())}}))
        """)
        assert seen["found"] == [], seen
        assert len(seen["pids"]) <= 3, f"the worker sees processes beyond its own: {seen['pids']}"
    finally:
        shutil.rmtree(other)


def test_private_tmp_var_tmp_dev_shm_start_empty_and_vanish():
    token = f"isolation-{os.getpid()}-{time.monotonic_ns()}"
    seen = inside(f"""
        import json, os
        out = {{}}
        for top in ("/tmp", "/var/tmp", "/dev/shm"):
            out[top] = os.listdir(top)
            with open(os.path.join(top, {token!r}), "w") as f:
                f.write("left behind")
            with open(os.path.join(top, "results.json"), "w") as f:
                f.write({token!r})
        print(json.dumps(out))
    """)
    assert seen == {"/tmp": [], "/var/tmp": [], "/dev/shm": []}, seen
    for top in ("/tmp", "/var/tmp", "/dev/shm"):
        assert not Path(top, token).exists(), f"{top}/{token} outlived the sandbox"
        try:
            assert token not in Path(top, "results.json").read_text(errors="replace")
        except OSError:
            pass


def test_dangerous_system_calls_fail_with_eperm():
    seen = inside("""
        import ctypes, errno, json, platform
        libc = ctypes.CDLL(None, use_errno=True)
        x86 = platform.machine() == "x86_64"
        numbers = {"ptrace": 101 if x86 else 117, "process_vm_readv": 310 if x86 else 270,
                   "mount": 165 if x86 else 40, "keyctl": 250 if x86 else 219,
                   "perf_event_open": 298 if x86 else 241, "bpf": 321 if x86 else 280,
                   "userfaultfd": 323 if x86 else 282, "setns": 308 if x86 else 268}
        out = {}
        for name, nr in numbers.items():
            ctypes.set_errno(0)
            rc = libc.syscall(nr, 0, 0, 0, 0, 0, 0)
            out[name] = [rc, errno.errorcode.get(ctypes.get_errno(), "")]
        out["unshare(CLONE_NEWUSER)"] = [libc.unshare(0x10000000), errno.errorcode.get(ctypes.get_errno(), "")]
        out["unshare(CLONE_NEWNET)"] = [libc.unshare(0x40000000), errno.errorcode.get(ctypes.get_errno(), "")]
        print(json.dumps(out))
    """)
    for name, (rc, error) in seen.items():
        assert rc == -1 and error == "EPERM", f"{name}: {rc} {error}"


def test_seccomp_program_checks_the_architecture():
    program = isolation.seccomp_program()
    assert len(program) % 8 == 0 and len(program) // 8 < 4096
    import struct

    first = struct.unpack("<HBBI", program[:8])
    assert first == (0x20, 0, 0, 4), "the program must start by loading seccomp_data.arch"
    archs = {struct.unpack("<HBBI", program[i : i + 8])[3] for i in range(8, 8 * 5, 8)}
    assert {isolation.AUDIT_ARCH_X86_64, isolation.AUDIT_ARCH_AARCH64} <= archs


def test_no_network():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    try:
        seen = inside(f"""
            import json, socket
            out = {{}}
            for host in ("127.0.0.1", "1.1.1.1"):
                try:
                    socket.create_connection((host, {port}), timeout=2).close()
                    out[host] = "connected"
                except OSError as error:
                    out[host] = type(error).__name__
            print(json.dumps(out))
        """)
        assert "connected" not in seen.values(), seen
        with pytest.raises(OSError):
            listener.accept()
    finally:
        listener.close()


def test_worker_runs_as_the_grades_uid_when_root():
    if not IS_ROOT:
        pytest.skip("not root: the worker keeps the grading user's uid inside a user namespace")
    found = _available()
    seen = inside("""
        import json, os
        status = [line for line in open("/proc/self/status") if line.startswith(("CapEff", "CapPrm", "NoNewPrivs"))]
        print(json.dumps({"ids": [os.getuid(), os.geteuid(), os.getgid()], "groups": os.getgroups(),
                          "caps": status}))
    """)
    assert seen["ids"] == [found.uid] * 3 and found.uid != 0, seen
    assert seen["groups"] == [], seen
    assert all(line.split()[1].strip("0") in ("", "1") for line in seen["caps"]), seen


HOLD_UID = """
import sys, time
sys.path.insert(0, sys.argv[1])
from grader.sandbox import isolation
print(isolation.allocate_uid(), flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_concurrent_grades_get_different_uids():
    if not IS_ROOT:
        pytest.skip("uids are allocated only as root")
    _available()
    holders = [
        subprocess.Popen([sys.executable, "-c", HOLD_UID, str(ROOT), "3"], stdout=subprocess.PIPE, text=True, env=ENV)
        for _ in range(3)
    ]
    uids = [int(p.stdout.readline()) for p in holders]
    for p in holders:
        p.wait(timeout=30)
    assert len(set(uids)) == 3, uids
    assert all(uid in isolation.UID_RANGE for uid in uids), uids
    later = subprocess.run(
        [sys.executable, "-c", HOLD_UID, str(ROOT), "0"], capture_output=True, text=True, env=ENV, timeout=60
    )
    assert int(later.stdout) == min(uids), "a uid must be free again once its grade is over"


# --- the fallback --------------------------------------------------------------------------------


def test_grade_all_refuses_without_isolation(tmp_path):
    (tmp_path / "subs").mkdir()
    env = {**ENV, isolation.DISABLE_ENV: "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "grader",
            "grade-all",
            str(tmp_path / "subs"),
            "--out",
            str(tmp_path / "out"),
            "--lang",
            "en",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "--allow-unisolated" in done.stderr and "GRADER_NO_BWRAP" in done.stderr, done.stderr
    allowed = subprocess.run(
        [
            sys.executable,
            "-m",
            "grader",
            "grade-all",
            str(tmp_path / "subs"),
            "--out",
            str(tmp_path / "out"),
            "--allow-unisolated",
            "--lang",
            "en",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert allowed.returncode == 0, allowed.stderr
    assert "no sandbox isolation" in allowed.stderr


@pytest.mark.slow
@pytest.mark.parametrize("fallback", [False, True], ids=["bubblewrap", "fallback"])
def test_grade_records_the_sandbox(tmp_path, fallback):
    """results.json says how the worker was isolated; without bubblewrap the grade says so."""
    if not fallback:
        _available()
    env = {**ENV, isolation.DISABLE_ENV: "1"} if fallback else ENV
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "grader",
            "grade",
            str(ROOT / "assignments"),
            "--out",
            str(tmp_path),
            "--parts",
            "masks",
            "--no-train",
            "--quiet",
            "--lang",
            "en",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    sandbox = json.loads((tmp_path / "results.json").read_text())["extra_data"]["sandbox"]
    warned = [line for line in done.stderr.splitlines() if "no sandbox isolation" in line]
    if fallback:
        assert sandbox["isolation"] == "none" and "GRADER_NO_BWRAP" in sandbox["isolation_reason"], sandbox
        assert len(warned) == 1, done.stderr
    else:
        assert sandbox["isolation"] == "bubblewrap" and not warned, (sandbox, done.stderr)
        assert sandbox["mode"] == ("root" if IS_ROOT else "unprivileged")
        if IS_ROOT:
            assert sandbox["worker_uid"] in isolation.UID_RANGE and sandbox["privilege_drop"] is True
