"""Hostile submissions: whatever the student's code does, the grader stays in charge.

Every folder under ``tests/selftest/hostile/`` is an attack: the ``transformer/`` modules it
changes (laid over the current stubs at run time, with the shared probe of ``_shared/`` and, for
an attack that builds on the reference, ``solutions/transformer/<module>.py`` as
``_reference_<module>.py``) and a ``NOTE.md`` saying what it tries and what must happen
instead. Each one is graded here by the real command,
``python -m grader grade SUBMISSION --out DIR --parts ... --no-train``, and
``assert_grader_in_charge`` checks the outcome:

* the grade finishes within its limits and exits 0 (the judge is unharmed);
* ``results.json`` is written by the judge, in the output folder only: schema-valid, sealed
  with a nonce that the judge printed on its own stdout and that no worker ever saw;
* the score is what the code earns honestly (an attack on the stubs earns 0; the NaN attack
  no more than the same code returning zeros; a banned call zeroes its part);
* nothing outside the output folder was created or changed: the repository copy and the
  submission (checksummed before and after), the home directory, ``/autograder``, files named
  after the run's token anywhere under ``/tmp``;
* no process started by the grade is left running: the grade runs under a small wrapper that
  is a *child subreaper* (``PR_SET_CHILD_SUBREAPER``), so every orphan — even one that
  double-forked and left its session — is reparented to it and found after the grade;
* student code never ran in the judge's process (the attacks record the pid and uid of every
  process they run in, into a world-writable marker folder), and when the worker runs as an
  unprivileged user, none of its code ran as root.

Isolation of the test itself: each run grades a fresh *copy* of the repository (its ``.venv``
a symlink to the real one), from a folder ``/tmp/hostile-<token>/`` that an unprivileged
worker can traverse, so an attack that finds "the repository" through ``/proc`` or
``sys.prefix`` finds the copy. Attacks never write to the developer's checkout (their write
targets exclude it). The placeholders ``@@MARKER_DIR@@``, ``@@TOKEN@@``, ``@@REAL_REPO@@``,
``@@NET_PORT@@`` (a TCP/UDP listener of the test on the loopback) in the submissions are filled in when the
copy is made, and files stored as ``*.hostile``
(``conftest.py``, ``sitecustomize.py``, ``.pth``, ``pytest.ini``, which this repository's own
pytest or Python must never pick up) get their real names back. Zip archives and symlinks
are built at run time (git would store the links).

Speed: every submission is graded with ``--parts`` limited to the part its attack lives in
and ``--no-train``; the grades run in a small thread pool (``HOSTILE_JOBS``, default 2) that
starts them all as soon as the first test of this module runs, and each test waits for its
own. Attacks that need the wall-clock time-out run with a short per-call limit
(``--call-timeout``, when the grader has that option).

Modes: every attack is graded twice, with the judge as root (Gradescope: each grade's workers
get a uid of their own) and with the judge as an ordinary user (user namespaces); run as root,
the suite plays that user itself (see ``MODES`` and ``_judge_command``). In both, bubblewrap
gives each worker its own namespaces (``grader/sandbox/isolation.py``) and
``test_workers_are_isolated`` fails if it did not. ``GRADER_NO_BWRAP=1`` grades in the
fallback instead: the checks that need namespaces (or, without root, a separate uid) are then
``xfail(strict=True)`` with the reason, so that a grader that closes a gap turns its test into
an unexpected pass; see docs/security.md.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
import uuid
import warnings
import zipfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from grader.contract import PRIVATE_PATHS
from grader.results import verify

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = Path(__file__).resolve().parent / "hostile"
STUBS = ROOT / "assignments" / "transformer"  # what every attack is laid over
SHARED = HOSTILE / "_shared"  # modules several attacks import: the probe (_hostile_probe.py), ...
REFERENCE = ROOT / "solutions" / "transformer"  # importable by an attack as _reference_<module>
SCHEMA = ROOT / "grader" / "schemas" / "gradescope_results.schema.json"
IS_ROOT = os.geteuid() == 0
# The suite grades every attack in each mode: "root" (the judge as root, as on Gradescope: each
# grade's workers get a uid of their own) and "unprivileged" (the judge as an ordinary user, as
# on a laptop or a cluster node: user namespaces instead of uids). Run as root, the suite plays
# the ordinary user itself (HOSTILE_UNPRIVILEGED_UID, default nobody); run as an ordinary user,
# only that mode exists. HOSTILE_MODES=root (or unprivileged) runs one.
UNPRIVILEGED_UID = int(os.environ.get("HOSTILE_UNPRIVILEGED_UID", "65534"))
MODES = tuple(
    m
    for m in os.environ.get("HOSTILE_MODES", "root,unprivileged").split(",")
    if m in ("root", "unprivileged") and (IS_ROOT or m == "unprivileged")
)
JOBS = int(os.environ.get("HOSTILE_JOBS", "2"))
# What is not copied into a run's repository copy (and not checksummed).
NOT_COPIED = {
    ".venv",
    ".git",
    "__pycache__",
    ".pytest_cache",
    ".hypothesis",
    "out",
    "runs",
    "dist",
    ".ipynb_checkpoints",
    "hostile",
}
SHORT_CALL_TIMEOUT = 5  # s per call, for the attacks that only end by the wall-clock time-out
SHORT_PART_TIMEOUT = 45  # s per part, for the same
PART_TIMEOUT = float(os.environ.get("HOSTILE_PART_TIMEOUT", "120"))  # --part-timeout of every other grade
# A banned call found by the static pass zeroes its part however many checks run; the run-time
# tripwire (and its disarming) shows within the first checks: a short part time-out suffices.
BANNED_PART_TIMEOUT = 40.0
STARTUP_ALLOWANCE = 90.0  # s: judge and worker start-up, intake, static pass, writing the results

pytestmark = pytest.mark.slow

# --- the attacks and what each must come to ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Attack:
    parts: tuple[str, ...] = ("masks",)
    # The most the submission may score: a number; "zeros": what plain all-False masks earn
    # (graded once, as `control:zeros`); "twin": what the same code earns with 0.0 for NaN.
    bound: float | str = "zeros"
    kind: str = "folder"  # folder | zip-slip | zip-bomb | symlink-module | symlink-package
    part_timeout: float = PART_TIMEOUT  # --part-timeout of the grade
    grace: float = 0.3  # s to wait after the grade before looking for leftover processes
    short_timeout: bool = False  # run with a short per-call time-out (loops, sleeps)
    banned: str | None = None  # the call the verdict must name
    needs_unprivileged_worker: str | None = None  # xfail(strict) reason when the worker is not unprivileged
    # ... in these modes only (the modes in which the grading user can do the harm at all)
    same_user_modes: tuple[str, ...] = ("root", "unprivileged")
    needs_namespaces: str | None = None  # xfail(strict) reason when the worker runs without bubblewrap
    concurrent: bool = False  # grade the reference solution at the same time (something to find)
    train: bool = False  # grade with training (the translation part), not --no-train
    extra: Callable | None = None  # attack-specific checks: extra(run)

    @property
    def time_limit(self) -> float:
        """The grade must be done by then: its own limits plus start-up and writing."""
        per_part = SHORT_PART_TIMEOUT if self.short_timeout else self.part_timeout
        return STARTUP_ALLOWANCE + len(self.parts) * per_part


def _no_event(*names):
    def check(run):
        found = [e for e in run.events if e.get("event") in names]
        assert not found, f"these must never happen: {found[:5]}"

    return check


def _check_prewrite(run):
    forged = [e.get("path") for e in run.events if e.get("event") == "forged"]
    nonce = run.seal.get("nonce", "")
    assert not nonce.startswith("forged-"), "results.json carries the attack's forged nonce"
    # The checksum and the out-dir check cover the repository, the submission and out/;
    # /autograder is checked by the shared helper. Forgeries inside the worker's own scratch
    # folder (deleted with it) are harmless.
    run.note(f"forged results.json written at: {sorted(set(forged))}")


def _check_daemon(run):
    forged = [e for e in run.events if e.get("event") == "forged-after-judge"]
    assert not forged, f"a daemon rewrote the judge's results.json after the grade: {forged[:2]}"


def _check_output_flood(run):
    report = run.report
    for stream in ("stdout", "stderr"):
        size = report["streams"].get(stream, [0])[0]
        assert size < 2 * 2**20, f"the grade's own {stream} carried {size} bytes of the worker's flood"
    total = sum(p.stat().st_size for p in run.out.rglob("*") if p.is_file())
    assert total < 5 * 2**20, f"the output folder holds {total} bytes"


def _check_secrets(run):
    secrets = run.secret_hashes()
    if run.worker_unprivileged or run.worker_isolated:
        read = [e for e in run.events if e.get("event") == "read" and e.get("sha256") in secrets]
        assert not read, f"the unprivileged worker read protected files: {[e['path'] for e in read][:5]}"
        leaked = run.out_text_contains(secrets)
        assert not leaked, f"hashes of protected files appear in the output folder: {leaked[:3]}"
    else:
        read = [e["path"] for e in run.events if e.get("event") == "read" and e.get("sha256") in secrets]
        run.note(f"worker not unprivileged: it read {len(read)} protected files (documented limit)")


def _check_edit_harness(run):
    writable = [e for e in run.events if e.get("event") == "real-repo-writable"]
    if run.worker_unprivileged or run.worker_isolated:
        assert not writable, f"the worker may write to the developer's checkout: {writable[:3]}"


def _check_banned(run):
    part = run.attack.parts[0]
    info = run.results["extra_data"]["parts"][part]
    assert info["score"] == 0, f"part {part} scored {info['score']} despite {run.attack.banned}"
    text = json.dumps(info["violations"]) + json.dumps(run.results["extra_data"].get("flags", []))
    assert run.attack.banned in text, (
        f"results.json does not name {run.attack.banned}: violations={info['violations']} "
        f"flags={run.results['extra_data'].get('flags')}"
    )
    messages = " ".join(t.get("output", "") for t in run.results["tests"] if part in t.get("tags", []))
    assert run.attack.banned in messages or run.attack.banned in info.get("message", "") + text


def _check_symlinks(run):
    text = run.results_text
    assert "root:x:0:0" not in text, "/etc/passwd was read through a symlink"
    warnings = run.results["extra_data"].get("warnings", []) + [run.results["extra_data"].get("rejected", "")]
    assert any("link" in w for w in warnings if w), f"no warning about the symbolic link: {warnings}"


def _check_zip(run):
    rejected = run.results["extra_data"].get("rejected", "")
    warnings = run.results["extra_data"].get("warnings", [])
    assert rejected or warnings, "the bad archive was neither rejected nor warned about"
    run.note(f"intake: {(rejected or '; '.join(warnings))[:120]}")


def _check_network(run):
    sent = [e for e in run.events if e.get("event") in ("tcp-sent", "udp-sent")]
    if run.worker_isolated:
        # bubblewrap's network namespace has a loopback of its own (up): a UDP datagram to
        # 127.0.0.1 "leaves" without an error and reaches nobody. What counts: the host's
        # listener received nothing and no TCP connection was made.
        tcp = [e for e in sent if e["event"] == "tcp-sent"]
        assert not run.network and not tcp, (
            f"the isolated worker reached the host's network: the listener received {run.network[:3]}, "
            f"the worker reports {[e['event'] for e in tcp][:4]}"
        )
        run.note(f"{len(sent)} UDP datagrams went to the sandbox's own loopback")
    elif IS_ROOT and run.mode == "root":
        assert not run.network and not sent, (
            f"as root the worker must have no network (a network namespace): the listener on the host "
            f"received {run.network[:3]}, the worker reports {[e['event'] for e in sent][:4]}"
        )
    else:
        run.note(f"not root: no network isolation (documented); the listener received {len(run.network)} messages")


def _check_other_submission(run):
    found = [e for e in run.events if e.get("event") == "found-other"]
    assert not found, f"the worker found and ran another grade's submission: {found[:3]}"
    assert run.other_rc == 0, f"the concurrent honest grade failed (exit status {run.other_rc})"
    run.note(f"events: {sorted({e.get('event') for e in run.events})}")


def _check_left_files(run):
    wrote = [e.get("path") for e in run.events if e.get("event") == "wrote"]
    assert wrote, f"the attack wrote nothing (vacuous): {run.events[:5]}"
    # what outlived the grade (results.json with the run's token included) is in run.stray_files,
    # which assert_grader_in_charge already found empty
    run.note(f"the worker wrote {len(wrote)} files, all gone")


def _check_forge_translation(run):
    info = run.results["extra_data"]["parts"]["translation"]
    assert info["score"] == 0, f"the forged translation scored {info['score']}"
    assert any(e.get("event") == "translation-forged" for e in run.events), "the fakes never ran (vacuous)"
    text = " ".join(t.get("output", "") for t in run.results["tests"] if "translation" in t.get("tags", []))
    assert "BLEU 100.00" in text and "missing keys" in text, text[:600]
    flags = run.results["extra_data"].get("flags", [])
    assert any("claims BLEU" in flag for flag in flags), f"the disagreement is not among the flags: {flags}"


# The words protocol.py uses when it refuses a reply (a limit, a lying header, nesting).
_REFUSAL = re.compile(r"exceeds the|more than the limit|do not match|overlaps or leaves gaps|nested too deeply")


def _check_replies_refused(run):
    forged = [e.get("variant") for e in run.events if e.get("event") == "reply-forged"]
    assert len(forged) >= 3, f"the forged replies were not sent (vacuous): {run.events[:5]}"
    messages = " ".join(t.get("output", "") for t in run.results["tests"] if "masks" in t.get("tags", []))
    assert _REFUSAL.search(messages), f"no protocol error names the problem: {messages[:300]}"
    run.note(f"forged replies: {forged}")


def _check_twin(run):
    run.note(f"zeros-twin scored {run.bound}")


def _banned(part: str, call: str) -> Attack:
    """A correct part that uses a banned building block: 0 points, the call named."""
    return Attack(parts=(part,), bound=0.0, part_timeout=BANNED_PART_TIMEOUT, banned=call, extra=_check_banned)


NO_NAMESPACES = (
    "the worker runs without bubblewrap (extra_data.sandbox.isolation is not 'bubblewrap'): "
    "it can {what}; see docs/security.md"
)
SAME_USER = (
    "the worker runs as the grading user (not root, or root but the privilege drop was skipped): "
    "it can {what}; only a separate user (or namespaces) prevents it — see docs/security.md"
)

ATTACKS: dict[str, Attack] = {
    "exit-at-import": Attack(bound=0.0),
    "exit-in-forward": Attack(bound=0.0),
    "prewrite-results": Attack(
        bound=0.0,
        extra=_check_prewrite,
        needs_unprivileged_worker=SAME_USER.format(what="write wherever that user can, /autograder included"),
        same_user_modes=("root",),
    ),
    "monkeypatch-asserts": Attack(),
    "tensor-subclass-eq": Attack(),
    "object-eq-true": Attack(),
    "hide-tracebacks": Attack(bound=0.0),
    "conftest-injection": Attack(extra=_no_event("conftest-loaded", "conftest-configure", "hijacked-live-pytest")),
    "site-hooks": Attack(extra=_no_event("site-hook-executed")),
    "shadow-stdlib": Attack(),
    "shadow-grader": Attack(),
    "fake-output": Attack(),
    "read-secrets": Attack(bound=0.0, extra=_check_secrets),
    "steal-solution": Attack(
        bound=0.0,
        needs_unprivileged_worker=SAME_USER.format(
            what="read solutions/ (deployments ship none: the Gradescope autograder has no solutions/)"
        ),
    ),
    "edit-harness": Attack(
        extra=_check_edit_harness,
        needs_unprivileged_worker=SAME_USER.format(
            what="write into the repository and the home directory through absolute paths"
        ),
    ),
    "kill-parent": Attack(needs_unprivileged_worker=SAME_USER.format(what="signal the judge")),
    "forge-and-kill": Attack(
        needs_unprivileged_worker=SAME_USER.format(what="write the judge's output folder and signal the judge")
    ),
    "network-exfiltration": Attack(extra=_check_network),
    "loop-forward": Attack(bound=0.0, short_timeout=True),
    "loop-import": Attack(bound=0.0, short_timeout=True),
    "memory-bomb": Attack(bound=0.0, short_timeout=True),
    "fork-bomb": Attack(grace=0.5),
    "escape-daemon": Attack(grace=3.0, extra=_check_daemon),
    "output-flood": Attack(short_timeout=True, extra=_check_output_flood),
    "pickle-payload": Attack(bound=0.0, extra=_no_event("pickle-executed")),
    "huge-tensor": Attack(bound=0.0, short_timeout=True),
    "zip-slip": Attack(bound=0.0, kind="zip-slip", extra=_check_zip),
    "zip-bomb": Attack(bound=0.0, kind="zip-bomb", extra=_check_zip),
    "symlink-module": Attack(bound=0.0, kind="symlink-module", extra=_check_symlinks),
    "symlink-package": Attack(bound=0.0, kind="symlink-package"),
    "nan-return": Attack(parts=("training",), bound="twin", extra=_check_twin),
    "banned-layernorm": _banned("normalization", "LayerNorm"),
    "banned-sdpa-getattr": _banned("attention", "scaled_dot_product_attention"),
    "banned-importlib-layernorm": _banned("normalization", "layer_norm"),
    "banned-cross-entropy": _banned("training", "cross_entropy"),
    "banned-aten-alias": _banned("normalization", "layer_norm"),
    "banned-tripwire-disarm": _banned("normalization", "layer_norm"),
    "banned-aten-ops": _banned("normalization", "native_layer_norm"),
    "banned-aten-sdpa": _banned("attention", "scaled_dot_product"),
    "banned-compiled-loss": _banned("training", "cross_entropy"),
    "forge-translation": Attack(parts=("translation",), bound=0.0, train=True, extra=_check_forge_translation),
    "reply-fake-view": Attack(bound=0.0, extra=_check_replies_refused),
    "reply-flood": Attack(bound=0.0, extra=_check_replies_refused),
    "read-other-submission": Attack(
        bound=0.0,
        concurrent=True,
        extra=_check_other_submission,
        needs_namespaces=NO_NAMESPACES.format(what="read the submission copies of grades running at the same time"),
    ),
    "leave-files": Attack(
        bound=0.0,
        extra=_check_left_files,
        needs_namespaces=NO_NAMESPACES.format(what="leave files in the shared /tmp, /var/tmp and /dev/shm"),
    ),
}


def attack_dirs() -> list[str]:
    return sorted(p.name for p in HOSTILE.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


# --- the wrapper: runs one grade as a child subreaper and reports leftovers ---------------------

# Runs as `python -c WRAPPER spec.json`. Its own command line must not look like the grader's
# (the kill-parent attack stops walking up at the first ancestor that does not).
WRAPPER = r'''
import ctypes, json, os, signal, subprocess, sys, threading, time
spec = json.load(open(sys.argv[1]))
libc = ctypes.CDLL(None, use_errno=True)
subreaper = libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
streams = {}
def drain(name, pipe):
    total, tail = 0, b""
    while True:
        chunk = pipe.read1(1 << 16)
        if not chunk:
            break
        total += len(chunk)
        tail = (tail + chunk)[-65536:]
    streams[name] = [total, tail.decode("utf-8", "replace")]
def stat_of(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[0].decode(), int(fields[1])
    except (OSError, ValueError, IndexError):
        return None, None
def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""
def uid_of(pid):
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None
def pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]
start = time.monotonic()
proc = subprocess.Popen(spec["command"], cwd=spec["cwd"], env=spec["env"], stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
threads = [threading.Thread(target=drain, args=(n, p), daemon=True)
           for n, p in (("stdout", proc.stdout), ("stderr", proc.stderr))]
for t in threads:
    t.start()
timed_out = False
try:
    rc = proc.wait(timeout=spec["hard_limit"])
except subprocess.TimeoutExpired:
    timed_out = True
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.kill()
    rc = proc.wait()
elapsed = time.monotonic() - start
time.sleep(spec["grace"])
me = os.getpid()
leftovers = {}
frontier = [me]
while frontier:
    parent = frontier.pop()
    for pid in pids():
        state, ppid = stat_of(pid)
        if ppid == parent and pid not in leftovers and pid != proc.pid:
            leftovers[pid] = {"pid": pid, "ppid": ppid, "state": state, "uid": uid_of(pid),
                              "cmdline": cmdline(pid)[:300]}
            frontier.append(pid)
def started_by_ignored(pid):
    """Whether pid or one of its ancestors is the honest grade run beside the attack (its own
    command names a folder of its own; its workers name only the shared checkout)."""
    seen = set()
    while pid > 1 and pid not in seen and spec.get("ignore"):
        seen.add(pid)
        if spec["ignore"] in cmdline(pid):
            return True
        pid = stat_of(pid)[1] or 0
    return False
for pid in pids():
    if pid != me and pid not in leftovers and spec["needle"] in cmdline(pid) and not started_by_ignored(pid):
        state, ppid = stat_of(pid)
        leftovers[pid] = {"pid": pid, "ppid": ppid, "state": state, "uid": uid_of(pid),
                          "cmdline": cmdline(pid)[:300]}
running = [p for p in leftovers.values() if p["state"] not in ("Z", "X", None)]
for p in leftovers.values():
    try:
        os.kill(p["pid"], signal.SIGKILL)
    except OSError:
        pass
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    try:
        pid, _ = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        break
    if pid == 0:
        time.sleep(0.05)
for t in threads:
    t.join(timeout=5)
import resource
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
json.dump({"rc": rc, "timed_out": timed_out, "elapsed": elapsed, "judge_pid": proc.pid, "subreaper": subreaper,
           "cpu_s": usage.ru_utime + usage.ru_stime,
           "leftovers": running, "zombies": len(leftovers) - len(running), "streams": streams},
          open(spec["report"], "w"))
'''
assert "grader" not in WRAPPER


# --- one graded run ----------------------------------------------------------------------------


def _grader_options() -> str:
    """The grade command's --help text (to use optional flags only when they exist)."""
    if not hasattr(_grader_options, "text"):
        try:
            _grader_options.text = subprocess.run(
                [sys.executable, "-m", "grader", "grade", "--help"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
                env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
            ).stdout
        except (OSError, subprocess.SubprocessError):
            _grader_options.text = ""
    return _grader_options.text


def _copy_repo(target: Path) -> None:
    def ignore(directory, names):
        rel = Path(directory).relative_to(ROOT)
        return {
            n for n in names if n in NOT_COPIED or n.endswith(".pyc") or (rel == Path("notebooks") and n == "build")
        }

    shutil.copytree(ROOT, target, ignore=ignore, symlinks=True)
    if sys.prefix != sys.base_prefix:  # a virtual environment: the copy uses it through a link
        os.symlink(sys.prefix, target / ".venv")


def _python_of(repo: Path) -> str:
    if (repo / ".venv").is_symlink():
        return str(repo / ".venv" / "bin" / Path(sys.executable).name)
    return sys.executable


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def _copy_submission(source: Path, target: Path, values: dict[str, str]) -> None:
    """Lay an attack over the current stubs: ``assignments/transformer/*.py``, then the modules
    the suite provides that the attack imports (or that a module so laid in imports) — those of
    ``hostile/_shared/``, and ``_reference_<module>``: ``solutions/transformer/<module>.py``, for an
    attack that changes one piece of the reference and imports the rest from it — then the
    attack's own files: placeholders filled, ``*.hostile`` names restored. An attack folder holds
    only what it changes (``test_attacks_hold_only_what_they_change``)."""
    package = target / "transformer"
    package.mkdir(parents=True, exist_ok=True)
    for path in sorted(STUBS.glob("*.py")):
        shutil.copyfile(path, package / path.name)
    texts = [
        p.read_text(encoding="utf-8") for p in source.rglob("*.py*") if p.is_file() and "__pycache__" not in p.parts
    ]
    provided = {path.stem: path.read_text(encoding="utf-8") for path in SHARED.glob("*.py")}
    provided |= {f"_reference_{path.stem}": path.read_text(encoding="utf-8") for path in REFERENCE.glob("*.py")}
    used: set[str] = set()
    while True:
        # `from . import NAME`, `import NAME`, and `from .NAME import ...`
        more = {
            name
            for name in provided
            if name not in used and any(re.search(rf"\b(?:import|from)\b.*\b{name}\b", text) for text in texts)
        }
        if not more:
            break
        used |= more
        texts += [provided[name] for name in more]
    for name in sorted(used):
        (package / f"{name}.py").write_text(_fill(provided[name], values), encoding="utf-8")
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if "__pycache__" in rel.parts or path.suffix == ".pyc":
            continue
        name = rel.as_posix().removesuffix(".hostile")
        destination = target / name
        if path.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(_fill(path.read_text(encoding="utf-8"), values), encoding="utf-8")
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _tree_digest(root: Path, skip: set[str]) -> dict[str, str]:
    """Path -> kind and content hash, for everything under ``root`` (``skip``: top-level names)."""
    digest = {}
    for directory, dirs, files in os.walk(root, followlinks=False):
        rel_dir = Path(directory).relative_to(root)
        keep = []
        for d in dirs:
            # .hypothesis/: the judge's own hypothesis cache (git-ignored), not the worker's doing
            if (rel_dir == Path(".") and d in skip) or d in ("__pycache__", ".venv", ".git", ".hypothesis"):
                continue
            full = Path(directory) / d
            if full.is_symlink():
                digest[(rel_dir / d).as_posix()] = "link:" + os.readlink(full)
            else:
                digest[(rel_dir / d).as_posix() + "/"] = "dir"
                keep.append(d)
        dirs[:] = keep
        for name in files:
            full = Path(directory) / name
            rel = (rel_dir / name).as_posix()
            if rel_dir == Path(".") and name in skip:
                continue
            if name.endswith(".pyc"):
                continue
            if full.is_symlink():
                digest[rel] = "link:" + os.readlink(full)
                continue
            try:
                digest[rel] = hashlib.sha256(full.read_bytes()).hexdigest()
            except OSError as error:
                digest[rel] = f"unreadable:{error.errno}"
    return digest


def _diff(before: dict, after: dict) -> list[str]:
    changes = [f"+ {p}" for p in after if p not in before]
    changes += [f"- {p}" for p in before if p not in after]
    changes += [f"~ {p}" for p in before if p in after and before[p] != after[p]]
    return sorted(changes)


def _read_events(markers: Path) -> list[dict]:
    events = []
    path = markers / "events.jsonl"
    if path.exists():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                events.append({"event": "unparsable", "line": line[:200]})
    return events


def _build_zip(kind: str, source_pkg: Path, zip_path: Path, repo: Path, base: Path, token: str) -> None:
    """The archives of the zip attacks (see their NOTE.md)."""
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(source_pkg.glob("*.py")):
            if kind == "zip-slip" and path.name == "masks.py":
                continue  # replaced by a symlink member below
            archive.write(path, f"transformer/{path.name}")
        if kind == "zip-slip":

            def add(name, data, mode=0o100644):
                info = zipfile.ZipInfo(name)
                info.external_attr = (mode & 0xFFFF) << 16
                archive.writestr(info, data)

            add(f"../escape-{token}.py", "ESCAPED = True\n")
            add(f"../../../../../../../../tmp/hostile-{token}/dotdot-escape-{token}.py", "ESCAPED = True\n")
            add(f"/tmp/hostile-{token}/abs-escape-{token}.py", "ESCAPED = True\n")
            add("evil-link", str(base), 0o120777)
            add(f"evil-link/through-link-{token}.py", "ESCAPED = True\n")
            add("transformer/masks.py", str(repo / "solutions" / "transformer" / "masks.py"), 0o120777)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "Duplicate name": that is the point
                add("transformer/__init__.py", "# a duplicate member\n")
        else:  # zip-bomb: 2 GiB of zeros (compresses to ~2 MiB) and 20 000 empty members
            info = zipfile.ZipInfo("transformer/bomb.py")
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as member:
                block = b"\0" * (64 << 20)
                for _ in range(32):
                    member.write(block)
            for i in range(20_000):
                archive.writestr(f"junk/{i}.py", "")


@dataclasses.dataclass
class Run:
    name: str
    attack: Attack
    base: Path
    token: str
    report: dict = dataclasses.field(default_factory=dict)
    results: dict | None = None
    results_text: str = ""
    events: list = dataclasses.field(default_factory=list)
    before: dict = dataclasses.field(default_factory=dict)
    after: dict = dataclasses.field(default_factory=dict)
    home_markers: list = dataclasses.field(default_factory=list)
    stray_files: list = dataclasses.field(default_factory=list)
    autograder_writes: list = dataclasses.field(default_factory=list)
    bound: float = 0.0
    notes: list = dataclasses.field(default_factory=list)
    network: list = dataclasses.field(default_factory=list)
    error: str = ""
    mode: str = "root"  # who runs the judge: "root" or "unprivileged" (see MODES)
    other_rc: int | None = None  # exit status of the concurrent honest grade (Attack.concurrent)

    @property
    def repo(self) -> Path:
        return self.base / "repo"

    @property
    def out(self) -> Path:
        return self.base / "out"

    @property
    def markers(self) -> Path:
        return self.base / "markers"

    @property
    def seal(self) -> dict:
        return ((self.results or {}).get("extra_data") or {}).get("authenticity") or {}

    @property
    def sandbox(self) -> dict:
        return ((self.results or {}).get("extra_data") or {}).get("sandbox") or {}

    @property
    def worker_unprivileged(self) -> bool:
        """The worker ran as a uid other than the judge's (root mode with a privilege drop)."""
        return IS_ROOT and self.mode == "root" and bool(self.sandbox.get("privilege_drop"))

    @property
    def worker_isolated(self) -> bool:
        """The worker ran in bubblewrap's namespaces: it sees only its own copies, no network."""
        return self.sandbox.get("isolation") == "bubblewrap"

    def note(self, text: str) -> None:
        self.notes.append(text)

    def secret_hashes(self) -> set[str]:
        files = list((self.repo / "tests" / "hidden").glob("*"))
        files += list((self.repo / "solutions" / "transformer").glob("*.py"))
        files.append(self.repo / "grader" / "rubric.toml")
        return {hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.is_file()}

    def out_text_contains(self, needles) -> list[str]:
        found = []
        for path in self.out.rglob("*"):
            if path.is_file():
                text = path.read_text(encoding="utf-8", errors="replace")
                found += [f"{path.name}: {n}" for n in needles if n in text]
        return found


class _Listener:
    """A TCP and UDP listener on the host's loopback for the network attack."""

    def __init__(self):
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(16)
        self.tcp.settimeout(0.1)
        self.port = self.tcp.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.udp.settimeout(0.1)
        self.received: list[str] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping.is_set():
            try:
                connection, _ = self.tcp.accept()
                with connection:
                    connection.settimeout(1)
                    self.received.append("tcp:" + connection.recv(4096).decode("utf-8", "replace")[:200])
            except OSError:
                pass
            try:
                data, _ = self.udp.recvfrom(4096)
                self.received.append("udp:" + data.decode("utf-8", "replace")[:200])
            except OSError:
                pass

    def close(self) -> list[str]:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.tcp.close()
        self.udp.close()
        return self.received


# Run as root, the unprivileged mode starts the judge as UNPRIVILEGED_UID with `setpriv`. That
# user may not reach this virtual environment's interpreter (pyenv lives under /root, 0700), so
# it runs a python3.X of the same minor version it can reach, with the virtual environment's
# site-packages bound read-only at a path it can reach (`bwrap --dev-bind / /`: the whole
# machine as it is, plus that one mount), the way a course installs Python for its TAs.
UNPRIVILEGED_LAUNCHER = (
    "import runpy, site, sys; site.addsitedir(sys.argv[1]); sys.path.insert(0, sys.argv[2]); "
    "sys.argv = ['grader', *sys.argv[3:]]; runpy.run_module('grader', run_name='__main__', "
    "alter_sys=True)"
)


def _unprivileged_python() -> str | None:
    """An interpreter of this minor version that UNPRIVILEGED_UID can run, or None."""
    from grader.sandbox.process import _reachable_by_others

    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (os.path.realpath(sys.executable), f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        if os.path.isfile(candidate) and _reachable_by_others(Path(candidate)):
            return candidate
    return None


def _judge_command(run: Run, base: Path, grader_args: list[str]) -> list[str]:
    """`python -m grader ARGS` as the run's mode wants it (see MODES)."""
    if not (run.mode == "unprivileged" and IS_ROOT):
        return [_python_of(run.repo), "-m", "grader", *grader_args]
    import sysconfig

    python = _unprivileged_python()
    assert python, f"no python{sys.version_info.major}.{sys.version_info.minor} that uid {UNPRIVILEGED_UID} can run"
    mount = base / "site-packages"
    mount.mkdir(parents=True, exist_ok=True)
    return [
        shutil.which("bwrap") or "bwrap",
        "--dev-bind",
        "/",
        "/",
        "--ro-bind",
        sysconfig.get_paths()["purelib"],
        str(mount),
        "--",
        shutil.which("setpriv") or "setpriv",
        f"--reuid={UNPRIVILEGED_UID}",
        f"--regid={UNPRIVILEGED_UID}",
        "--clear-groups",
        "--inh-caps=-all",
        python,
        "-I",
        "-c",
        UNPRIVILEGED_LAUNCHER,
        str(mount),
        str(run.repo),
        *grader_args,
    ]


def grade_in_sandbox(
    name: str,
    attack: Attack,
    submission_source: Path | None = None,
    transform: Callable[[str], str] | None = None,
    mode: str = "root",
) -> Run:
    """Grade one submission in a fresh /tmp/hostile-<token>/ (see the module docstring)."""
    token = uuid.uuid4().hex[:12]
    base = Path(f"/tmp/hostile-{token}")
    run = Run(name=name, attack=attack, base=base, token=token, mode=mode)
    base.mkdir(mode=0o755)
    os.chmod(base, 0o755)
    run.markers.mkdir()
    os.chmod(run.markers, 0o1777)
    (base / "home").mkdir()
    _copy_repo(run.repo)
    listener = _Listener()
    values = {
        "@@MARKER_DIR@@": str(run.markers),
        "@@TOKEN@@": token,
        "@@REAL_REPO@@": str(ROOT),
        "@@NET_PORT@@": str(listener.port),
    }
    submission = base / "submission"
    source = submission_source or HOSTILE / name
    _copy_submission(source, submission, values)
    if transform is not None:
        for path in submission.rglob("*.py"):
            path.write_text(transform(path.read_text(encoding="utf-8")), encoding="utf-8")
    if attack.kind in ("zip-slip", "zip-bomb"):
        graded = base / "submission.zip"
        _build_zip(attack.kind, submission / "transformer", graded, run.repo, base, token)
    elif attack.kind == "symlink-module":
        graded = submission
        (submission / "transformer" / "masks.py").unlink()
        os.symlink(run.repo / "solutions" / "transformer" / "masks.py", submission / "transformer" / "masks.py")
        (submission / "transformer" / "attention.py").unlink()
        os.symlink("/etc/passwd", submission / "transformer" / "attention.py")
    elif attack.kind == "symlink-package":
        graded = submission
        shutil.rmtree(submission / "transformer")
        os.symlink(run.repo / "solutions" / "transformer", submission / "transformer")
    else:
        graded = submission

    command = ["grade", str(graded), "--out", str(run.out), "--parts", ",".join(attack.parts)]
    if not attack.train:
        command.append("--no-train")
    options = _grader_options()
    if "--print-seal" in options:  # the seal line the checks below read
        command.append("--print-seal")
    if "--threads" in options:
        command += ["--threads", "1"]
    if attack.short_timeout and "--call-timeout" in options:
        command += ["--call-timeout", str(SHORT_CALL_TIMEOUT)]
    if "--part-timeout" in options:
        command += ["--part-timeout", str(SHORT_PART_TIMEOUT if attack.short_timeout else attack.part_timeout)]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(base / "home"),
        "LANG": "C.UTF-8",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        # the worker's namespaces hide /tmp: bind the marker folder in so the attack can record
        "GRADER_WORKER_EXTRA_BIND": str(run.markers),
    }
    if os.environ.get("GRADER_NO_BWRAP"):  # the fallback run (no bubblewrap)
        env["GRADER_NO_BWRAP"] = os.environ["GRADER_NO_BWRAP"]
    command = _judge_command(run, base, command)
    spec = {
        "command": command,
        "cwd": str(run.repo),
        "env": env,
        "hard_limit": attack.time_limit + 60,
        "grace": attack.grace,
        "needle": str(base),
        "report": str(base / "report.json"),
    }
    other_base = Path(f"/tmp/hostile-other-{uuid.uuid4().hex[:12]}")
    if attack.concurrent:  # the honest grade beside it is not the attack's leftover
        spec["ignore"] = str(other_base)
    (base / "spec.json").write_text(json.dumps(spec))

    skip = {"out", "markers", "report.json", "spec.json"}
    other = None
    # Attack.concurrent: an honest grade of the reference at the same time, for the attack to find
    # (in a folder of its own, so that neither the checksums nor the leftover search mix them up).
    if attack.concurrent:
        honest = other_base / "submission" / "transformer"
        honest.mkdir(parents=True)
        for path in (ROOT / "solutions" / "transformer").glob("*.py"):
            shutil.copyfile(path, honest / path.name)
        other_command = _judge_command(
            run,
            other_base,
            [
                "grade",
                str(honest.parent),
                "--out",
                str(other_base / "out"),
                "--parts",
                "masks,attention,feed_forward",
                "--no-train",
                "--quiet",
            ],
        )
    if mode == "unprivileged" and IS_ROOT:  # the ordinary user owns its grade's folders
        for folder in (base, other_base):
            for path in [folder, *folder.rglob("*")] if folder.exists() else []:
                os.lchown(path, UNPRIVILEGED_UID, UNPRIVILEGED_UID)
    run.before = _tree_digest(base, skip)
    home_marker_paths = [Path(p) / f".hostile-{token}" for p in {"/root", os.path.expanduser("~")}]

    try:
        if attack.concurrent:
            with open(other_base / "grade.log", "w") as log:
                other = subprocess.Popen(
                    other_command, cwd=run.repo, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
                )
        subprocess.run(
            [sys.executable, "-c", WRAPPER, str(base / "spec.json")],
            cwd=base,
            check=False,
            timeout=attack.time_limit + 120,
            stdin=subprocess.DEVNULL,
        )
    finally:
        run.network = listener.close()
        if other is not None:
            try:
                run.other_rc = other.wait(timeout=300)
            except subprocess.TimeoutExpired:
                other.kill()
                run.other_rc = other.wait()
            shutil.rmtree(other_base, ignore_errors=True)

    run.report = json.loads((base / "report.json").read_text())
    run.after = _tree_digest(base, skip)
    run.events = _read_events(run.markers)
    results_path = run.out / "results.json"
    if results_path.is_file():
        run.results_text = results_path.read_text(encoding="utf-8")
        try:
            run.results = json.loads(run.results_text)
        except ValueError as error:
            run.error = f"results.json is not JSON: {error}"
    for marker in home_marker_paths:
        if marker.exists():
            run.home_markers.append(str(marker))
            marker.unlink()
    run.autograder_writes = _undo_autograder_writes(token)
    for top in (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm")):
        for directory, dirs, files in os.walk(top):
            depth = len(Path(directory).relative_to(top).parts)
            dirs[:] = [d for d in dirs if depth < 3 and Path(directory, d) != base]
            run.stray_files += [str(Path(directory, n)) for n in files + dirs if token in n]
        try:  # a results.json carrying the run's token (leave-files)
            if token in (top / "results.json").read_text(errors="replace"):
                run.stray_files.append(str(top / "results.json"))
        except OSError:
            pass
    for path in run.stray_files:  # reported; not left for the next run
        try:
            os.unlink(path) if not os.path.isdir(path) or os.path.islink(path) else shutil.rmtree(path)
        except OSError:
            pass
    return run


AUTOGRADER = Path("/autograder")
AUTOGRADER_EXISTED = {p for p in (AUTOGRADER, AUTOGRADER / "results") if p.exists()}


def _undo_autograder_writes(token: str) -> list[str]:
    """Forgeries carrying this run's token under /autograder (Gradescope's results folder):
    report and remove them, and the folders if this session's attacks created them."""
    found = []
    forged = AUTOGRADER / "results" / "results.json"
    try:
        if token in forged.read_text(errors="replace"):
            found.append(str(forged))
            forged.unlink()
    except OSError:
        pass
    for folder in (AUTOGRADER / "results", AUTOGRADER):
        if folder not in AUTOGRADER_EXISTED:
            try:
                folder.rmdir()
            except OSError:
                pass
    return found


def cleanup(run: Run) -> None:
    if not os.environ.get("HOSTILE_KEEP"):  # HOSTILE_KEEP=1 keeps /tmp/hostile-<token>/ for a post-mortem
        shutil.rmtree(run.base, ignore_errors=True)


# --- the shared verdict -----------------------------------------------------------------------


def assert_grader_in_charge(run: Run) -> None:
    """Everything that must hold after grading any hostile submission (see the docstring)."""
    report, attack = run.report, run.attack
    stderr_tail = report["streams"].get("stderr", [0, ""])[1][-3000:]
    assert not report["timed_out"], f"the grade did not finish within {attack.time_limit + 60} s"
    assert report["elapsed"] <= attack.time_limit, (
        f"the grade took {report['elapsed']:.0f} s (limit {attack.time_limit} s)"
    )
    assert report["rc"] == 0, f"the judge exited with {report['rc']} (harmed?):\n{stderr_tail}"
    assert run.results is not None, f"no results.json in the output folder ({run.error}):\n{stderr_tail}"

    # results.json: by the judge, in the output folder only, sealed with a nonce nobody else saw.
    elsewhere = [p for p in run.after if p.endswith("results.json") and run.before.get(p) != run.after[p]]
    assert not elsewhere, f"results.json written outside the output folder: {elsewhere}"
    if SCHEMA.exists():
        import jsonschema

        jsonschema.validate(run.results, json.loads(SCHEMA.read_text(encoding="utf-8")))
    seal = run.seal
    nonce = seal.get("nonce", "")
    assert len(nonce) >= 16 and "forged" not in nonce, f"results.json has no proper nonce: {seal}"
    stdout_tail = report["streams"].get("stdout", [0, ""])[1]
    assert nonce in stdout_tail and seal.get("sha256", "") in stdout_tail, (
        "the judge's stdout does not carry the nonce and hash of the results.json it wrote"
    )
    assert verify(run.results, nonce, seal.get("sha256")), "results.json was changed after the judge sealed it"
    assert run.results_text.count(nonce) == 1, "the nonce appears in results.json outside its seal"
    worker_saw = json.dumps(run.events)
    assert nonce not in worker_saw, "the worker knew the judge's nonce"

    # The score is what the code earns honestly.
    bound = run.bound
    assert float(run.results["score"]) <= bound + 1e-6, (
        f"score {run.results['score']} > {bound} (what this code earns honestly): "
        f"{json.dumps(run.results['extra_data']['parts'])[:800]}"
    )
    graded = set(run.results["extra_data"]["parts"])
    assert graded <= set(attack.parts), f"parts graded beyond --parts: {graded}"

    # Nothing outside the output folder created or changed.
    changes = _diff(run.before, run.after)
    assert not changes, f"files outside the output folder were created or changed: {changes[:10]}"
    assert not run.home_markers, f"the worker wrote into a home directory: {run.home_markers}"
    assert not run.stray_files, f"files named after the run appeared under /tmp: {run.stray_files[:10]}"
    assert not run.autograder_writes, f"the worker wrote into /autograder: {run.autograder_writes}"

    # No process left; student code never in the judge (nor as root when the drop is on).
    assert report["subreaper"], "the test could not become a child subreaper (no leftover check)"
    assert not report["leftovers"], f"processes left running after the grade: {report['leftovers'][:5]}"
    judge = str(report["judge_pid"])
    in_judge = [e for e in run.events if str(e.get("pid")) == judge]
    assert not in_judge, f"student code ran inside the judge's process: {in_judge[:3]}"
    if run.worker_unprivileged or run.mode == "unprivileged":
        as_root = [e for e in run.events if str(e.get("euid")) == "0"]
        assert not as_root, f"student code ran as root although the judge did not give it root: {as_root[:3]}"


# --- running the grades in a pool --------------------------------------------------------------

_pool: ThreadPoolExecutor | None = None
_futures: dict[str, Future] = {}
_lock = threading.Lock()


def _job(job: str) -> Run:
    """Grade one job, "MODE/NAME": an attack, "control:WHICH" or "twin:ATTACK"."""
    mode, _, key = job.partition("/")
    if key.startswith("control:"):
        which = key.removeprefix("control:")
        source = ROOT / ("solutions" if which == "solutions" else "assignments") / "transformer"
        staging = Path(f"/tmp/hostile-control-{uuid.uuid4().hex[:8]}")
        (staging / "transformer").mkdir(parents=True)
        for path in source.glob("*.py"):
            shutil.copyfile(path, staging / "transformer" / path.name)
        if which == "zeros":  # the stubs, with masks that return all-False masks of the right shapes
            masks = staging / "transformer" / "masks.py"
            text = masks.read_text(encoding="utf-8")
            for function, code in ZERO_MASKS.items():
                text, count = re.subn(rf"raise NotImplementedError\(\s*\"masks\.{function}:[^\"]*\"\s*\)", code, text)
                assert count == 1, f"the masks stub changed: cannot make {function} return zeros"
            masks.write_text(text, encoding="utf-8")
        try:
            run = grade_in_sandbox(key, Attack(bound=1e9), submission_source=staging, mode=mode)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return run
    if key.startswith("twin:"):
        name = key.removeprefix("twin:")
        return grade_in_sandbox(
            key,
            dataclasses.replace(ATTACKS[name], bound=1e9, extra=None),
            submission_source=HOSTILE / name,
            mode=mode,
            transform=lambda text: text.replace("float('nan')", "0.0"),
        )
    return grade_in_sandbox(key, ATTACKS[key], mode=mode)


ZERO_MASKS = {
    "padding_mask": "return torch.zeros(tokens.shape[0], 1, tokens.shape[1], dtype=torch.bool)",
    "causal_mask": "return torch.zeros(1, size, size, dtype=torch.bool)",
    "target_mask": "return torch.zeros(tokens.shape[0], tokens.shape[1], tokens.shape[1], dtype=torch.bool)",
}


def _jobs_for(items) -> list[str]:
    keys = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or item.module.__name__ != __name__ or "mode" not in callspec.params:
            continue
        mode = callspec.params["mode"]
        if "attack" in callspec.params:
            name = callspec.params["attack"]
            if name in ATTACKS:
                if ATTACKS[name].bound == "twin":
                    keys.append(f"{mode}/twin:{name}")
                if ATTACKS[name].bound == "zeros" and f"{mode}/control:zeros" not in keys:
                    keys.insert(0, f"{mode}/control:zeros")
                keys.append(f"{mode}/{name}")
        elif getattr(item, "originalname", "") in ("test_control", "test_workers_are_isolated"):
            keys.append(f"{mode}/control:{callspec.params.get('which', 'stubs')}")
    keys = list(dict.fromkeys(keys))

    def length(key: str) -> float:
        name = key.partition("/")[2]
        return ATTACKS[name].time_limit if name in ATTACKS else 0

    # The longest grades first (several parts, the time-outs), so that the pool ends evenly.
    return sorted(keys, key=lambda k: -length(k))


@pytest.fixture(scope="session")
def checkout_locked():
    """Lock this checkout's private folders as the grader locks its own repository as root.

    The attacks also look for hidden tests and solutions in this checkout (``@@REAL_REPO@@``),
    which is a second copy of them that the graded repository copy knows nothing about. A
    grader run from this checkout would have removed their "other" permission bits
    (``process.hide_from_worker``); do the same for the session and put the modes back after.
    """
    saved = {}
    if IS_ROOT:
        for name in PRIVATE_PATHS:
            path = ROOT / name
            if path.exists():
                saved[path] = stat.S_IMODE(os.stat(path).st_mode)
                os.chmod(path, saved[path] & ~0o007)
    yield
    for path, mode in saved.items():
        os.chmod(path, mode)


@pytest.fixture(scope="session")
def graded(request, checkout_locked):
    """name -> Future[Run]; every selected grade starts at once in a small pool."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=JOBS)
            for key in _jobs_for(request.session.items):
                _futures[key] = _pool.submit(_job, key)
    yield _futures
    _pool.shutdown(wait=True)
    for future in _futures.values():  # runs whose test never ran (-x, -k on a twin, an error)
        if future.done() and future.exception() is None:
            cleanup(future.result())


def _result(graded, key: str) -> Run:
    if key not in graded:
        graded[key] = _pool.submit(_job, key)
    return graded[key].result()


# --- the tests -------------------------------------------------------------------------------


def test_at_least_twenty_attacks_each_with_a_note_and_a_verdict():
    names = attack_dirs()
    assert len(names) >= 20, names
    assert set(names) == set(ATTACKS), (
        f"folders without a verdict: {set(names) - set(ATTACKS)}; "
        f"verdicts without a folder: {set(ATTACKS) - set(names)}"
    )
    for name in names:
        folder = HOSTILE / name
        assert (folder / "NOTE.md").is_file(), f"{name}: no NOTE.md"
        if ATTACKS[name].kind == "folder":  # (symlinks and archives are built at run time)
            assert any((folder / "transformer").glob("*.py*")), f"{name}: no transformer/ files of its own"
        stray = [
            p
            for p in folder.rglob("*")
            if p.name in ("conftest.py", "sitecustomize.py", "usercustomize.py", "pytest.ini") or p.suffix == ".pth"
        ]
        assert not stray, f"{name}: store {stray} as *.hostile (this repository's pytest/Python would load it)"


def _without_docstrings(text: str):
    """A module's syntax tree without its docstrings (a copy whose docstrings drifted is still a copy)."""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return tree


def _code_of(text: str) -> str:
    """A module's code without its docstrings."""
    return ast.dump(_without_docstrings(text))


def _definitions_of(text: str) -> dict[str, str]:
    """A module's top-level classes and functions: name -> code without docstrings."""
    return {
        node.name: ast.dump(node)
        for node in _without_docstrings(text).body
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
    }


def test_attacks_hold_only_what_they_change():
    """No attack folder carries a copy of a stub (the suite lays every attack over the current
    stubs), of a shared module, or of a class or function of the reference (an attack that
    changes one piece of a reference module imports the rest from ``_reference_<module>``), so
    nothing under hostile/ can drift from what it copies.

    The reference rule is per definition: a top-level class or function whose code (docstrings
    aside) is one of ``solutions/transformer/``'s is a copy, however much around it changed.
    Counting shared lines would not tell a copy from an attack: the reference modules are
    small, so nan-return's training.py (it rewrites its whole module, an honest ``__init__``
    included) shares a longer run of code with the reference (8 lines, docstrings aside) than
    banned-cross-entropy's old near-copy of it did (6), and the attacks that replace masks.py
    all keep its docstrings."""
    stubs = {path.name: _code_of(path.read_text(encoding="utf-8")) for path in STUBS.glob("*.py")}
    shared = {path.read_text(encoding="utf-8") for path in SHARED.glob("*.py")}
    reference = {
        code for path in REFERENCE.glob("*.py") for code in _definitions_of(path.read_text(encoding="utf-8")).values()
    }
    assert reference, f"no classes or functions found in {REFERENCE} (the reference rule would check nothing)"
    copies, reference_copies = [], []
    for name in attack_dirs():
        for path in sorted((HOSTILE / name / "transformer").glob("*.py")):
            text = path.read_text(encoding="utf-8")
            if text in shared or (path.name in stubs and _code_of(text) == stubs[path.name]):
                copies.append(f"{name}/{path.name}")
            copied = [d for d, code in _definitions_of(text).items() if code in reference]
            if copied:
                reference_copies.append(f"{name}/{path.name}: {', '.join(copied)}")
    assert not copies, f"copies of the stubs or of a shared module (delete them): {copies}"
    assert not reference_copies, (
        "copies of the reference's classes or functions (import them: "
        f"`from ._reference_<module> import *`): {reference_copies}"
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("which", ["solutions", "stubs", "zeros"])
def test_control(graded, which, mode):
    """The harness has teeth: the reference earns full marks on `masks` through the same
    machinery, the stubs earn nothing, all-False masks (the honest bound of the attacks that
    return them) earn less than full marks, and none of them trips a single check."""
    run = _result(graded, f"{mode}/control:{which}")
    try:
        run.bound = 1e9
        assert_grader_in_charge(run)
        score, top = float(run.results["score"]), float(run.results["extra_data"]["max_score"])
        assert top > 0
        if which == "solutions":
            assert score == pytest.approx(top), run.results["output"][:2000]
        elif which == "stubs":
            assert score == 0, run.results["output"][:2000]
        else:
            assert 0 <= score < top, run.results["output"][:2000]
    finally:
        cleanup(run)


def test_privilege_drop_is_active_when_root(graded):
    """As root the worker must run as the unprivileged `graderworker`: the protections of
    steal-solution, edit-harness, kill-parent, forge-and-kill, prewrite-results and
    read-secrets rest on it. The grader skips the drop (and says why in
    extra_data.sandbox.reason) when that user cannot reach the interpreter or torch."""
    if "root" not in MODES:
        pytest.skip("not root (or HOSTILE_MODES without root): no privilege drop to check")
    run = _result(graded, "root/control:stubs")
    assert run.results is not None
    sandbox = run.sandbox
    reason = str(sandbox.get("reason", ""))
    if "cannot reach" in reason and not os.environ.get("HOSTILE_REQUIRE_DROP"):
        # A deployment matter (where Python and the venv are installed), not the grader's: the
        # attacks that need the drop are xfail in this run. HOSTILE_REQUIRE_DROP=1 makes it fail.
        pytest.skip(f"root, but no privilege drop on this installation: {reason}")
    assert sandbox.get("privilege_drop") is True, (
        f"running as root, but the worker ran as root too: {sandbox.get('reason')} "
        "(install Python and the virtual environment where an unprivileged user can read them, "
        "e.g. not under /root)"
    )


@pytest.mark.parametrize("mode", MODES)
def test_workers_are_isolated(graded, mode):
    """Every attack below is meant to meet bubblewrap's namespaces in both modes: a machine
    where they do not work (no bwrap, user namespaces off) fails here, loudly, instead of
    turning the attacks that need them into expected failures. GRADER_NO_BWRAP=1 (the
    fallback's own run) skips it."""
    if os.environ.get("GRADER_NO_BWRAP"):
        pytest.skip("GRADER_NO_BWRAP: the run of the fallback without namespaces")
    run = _result(graded, f"{mode}/control:stubs")
    assert run.results is not None, run.error
    sandbox = run.sandbox
    assert sandbox.get("isolation") == "bubblewrap", (
        f"{mode} mode: the workers ran without namespaces: {sandbox.get('isolation_reason')}"
    )
    assert sandbox.get("mode") == mode, sandbox
    assert (sandbox.get("worker_uid") is not None) == (mode == "root"), sandbox


@pytest.mark.parametrize("attack", attack_dirs())
@pytest.mark.parametrize("mode", MODES)
def test_hostile_submission(graded, attack, mode, request):
    spec = ATTACKS[attack]
    run = _result(graded, f"{mode}/{attack}")
    try:
        if spec.bound == "twin":
            twin = _result(graded, f"{mode}/twin:{attack}")
            try:
                assert twin.results is not None, "the zeros-twin produced no results.json"
                run.bound = float(twin.results["score"])
            finally:
                cleanup(twin)
        elif spec.bound == "zeros":
            zeros = _result(graded, f"{mode}/control:zeros")
            assert zeros.results is not None, "the all-False-masks control produced no results.json"
            run.bound = float(zeros.results["score"])
        else:
            run.bound = float(spec.bound)
        if (
            spec.needs_unprivileged_worker
            and mode in spec.same_user_modes
            and not (run.worker_unprivileged or run.worker_isolated)
        ):
            reason = spec.needs_unprivileged_worker
            if IS_ROOT:
                reason += f" [sandbox: {run.sandbox.get('reason', '?')}]"
            request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
        if spec.needs_namespaces and not run.worker_isolated:
            reason = spec.needs_namespaces + f" [sandbox: {run.sandbox.get('isolation_reason', '?')}]"
            request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
        assert_grader_in_charge(run)
        if spec.extra is not None:
            spec.extra(run)
    finally:
        _summarise(run)
        cleanup(run)


# --- a table for humans (HOSTILE_SUMMARY=path writes one line per attack) ----------------------


def _summarise(run: Run) -> None:
    path = os.environ.get("HOSTILE_SUMMARY")
    if not path:
        return
    kinds = sorted({e.get("event", "?") for e in run.events})
    line = {
        "attack": run.name,
        "mode": run.mode,
        "rc": run.report.get("rc"),
        "elapsed": round(run.report.get("elapsed", 0), 1),
        "cpu_s": round(run.report.get("cpu_s", 0), 1),
        "network": run.network[:3],
        "score": (run.results or {}).get("score"),
        "bound": run.bound,
        "parts": (run.results or {}).get("extra_data", {}).get("parts"),
        "leftovers": len(run.report.get("leftovers", [])),
        "changes": _diff(run.before, run.after)[:5],
        "events": kinds,
        "event_pids": sorted({str(e.get("pid")) for e in run.events})[:5],
        "judge_pid": run.report.get("judge_pid"),
        "home_markers": run.home_markers,
        "stray": run.stray_files[:3],
        "sandbox": run.sandbox,
        "warnings": (run.results or {}).get("extra_data", {}).get("warnings"),
        "rejected": (run.results or {}).get("extra_data", {}).get("rejected"),
        "flags": (run.results or {}).get("extra_data", {}).get("flags"),
        "notes": run.notes,
        "base": str(run.base),
        "event_details": [
            {k: v for k, v in e.items() if k not in ("time", "argv0", "ppid", "uid")} for e in run.events[:12]
        ],
    }
    with _lock:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line, default=str) + "\n")
