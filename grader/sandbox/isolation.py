"""Namespaces for the worker: bubblewrap (``bwrap``) command line, seccomp filter, worker uids.

Every worker runs inside ``bwrap`` with its own mount, PID, IPC, UTS, network (and, where the
kernel allows, cgroup) namespaces. Its file system is a fresh tmpfs holding, read-only, exactly
what it needs — the system's ``/usr`` and ``/lib*`` (shared libraries), the interpreter's prefix
(standard library), the virtual environment (bound at ``/venv``), the worker's own code copy
(``/sandbox/code``) and its own copy of the submission (``/sandbox/submission``) — and private,
empty, writable ``/tmp``, ``/var/tmp`` and ``/dev/shm`` that vanish with it. Nothing of the
grader's repository, the tests, the reference solution, the output folder or any other grade
is there to be found; ``/proc`` shows only the worker's own processes; there is no network
(only a loopback of its own).

Two modes:

* **root** (Gradescope): bwrap runs without a user namespace and ``setpriv`` switches the
  worker to a uid of its own before Python starts (``--reuid/--regid``, no groups, empty
  capability sets, ``no_new_privs``). The uid is taken from ``UID_RANGE`` under an
  ``flock``'d lock file that the grade holds until it exits, so two concurrent grades never
  share one (no passwd entry needed). bwrap keeps only ``CAP_SETUID``/``CAP_SETGID``/
  ``CAP_SETPCAP`` for ``setpriv``, which gives them up.
* **unprivileged**: bwrap creates a user namespace (the worker keeps the grading user's uid,
  but sees and reaches only what is bound in).

A seccomp filter (classic BPF built here) makes ``ptrace``, ``process_vm_readv/writev``,
mounting, the keyring, ``perf_event_open``, ``bpf``, ``userfaultfd``, ``setns``/``unshare``
and ``clone`` with namespace flags fail with ``EPERM`` (``clone3``: ``ENOSYS``, so the C
library falls back to ``clone``); other architectures' and x32 system calls are refused. bwrap
installs it after its own set-up, just before it runs the worker.

When bwrap is missing, user namespaces are off, or ``GRADER_NO_BWRAP=1`` is set, ``probe``
says why and the grader falls back to the old process sandbox (``process.sandbox_user``).
"""

from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

UID_RANGE = range(60100, 61000)  # worker uids (root mode); any with a passwd entry are skipped
LOCK_DIRS = (
    Path("/run/lock/grader-worker-uids"),
    Path("/var/lock/grader-worker-uids"),
    Path("/tmp/.grader-worker-uids"),
)
CODE_DIR = "/sandbox/code"
SUBMISSION_DIR = "/sandbox/submission"
VENV_DIR = "/venv"
TMP_BYTES = 2 * 1024**3  # size of the private /tmp
SMALL_TMP_BYTES = 256 * 1024**2  # /var/tmp and /dev/shm
DISABLE_ENV = "GRADER_NO_BWRAP"  # "1": behave as if bubblewrap were missing (tests, debugging)
# Test suites only: extra folders bound read-write at the same path (os.pathsep-separated), so a
# hostile submission can record what it reached. Set by the judge's caller, never by a worker.
EXTRA_BIND_ENV = "GRADER_WORKER_EXTRA_BIND"
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/alternatives",
)


@dataclass
class Isolation:
    """How workers are isolated in this grade (``as_dict`` goes to ``extra_data.sandbox``)."""

    available: bool = False
    mode: str = ""  # "root" | "unprivileged"
    reason: str = ""  # why there is no isolation
    bwrap: str = ""
    setpriv: str = ""
    uid: int | None = None  # root mode: this grade's worker uid
    python: str = sys.executable  # the interpreter path inside the sandbox
    binds: list[tuple[str, str]] = field(default_factory=list)  # (host path, sandbox path), read-only
    site_paths: list[str] = field(default_factory=list)  # more site-packages for the worker's sys.path

    def as_dict(self) -> dict:
        return {
            "isolation": "bubblewrap" if self.available else "none",
            "mode": self.mode or ("root" if os.geteuid() == 0 else "unprivileged"),
            "isolation_reason": self.reason,
            "worker_uid": self.uid if self.available else None,
        }


# --- the worker's uid (root mode) ------------------------------------------------------------

_held_locks: dict[int, int] = {}  # uid -> fd of its lock file, held until this process exits


def allocate_uid() -> int:
    """A uid no other running grade uses: the first of UID_RANGE whose lock file we can flock."""
    for directory in LOCK_DIRS:
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            if directory.stat().st_uid != os.geteuid():
                continue
            break
        except OSError:
            continue
    else:
        raise OSError("no folder for the worker uid lock files")
    for uid in UID_RANGE:
        if uid in _held_locks:
            return uid
        try:
            pwd.getpwuid(uid)
            continue  # someone's real account: not ours to use
        except KeyError:
            pass
        fd = os.open(directory / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _held_locks[uid] = fd
        return uid
    raise OSError(f"all worker uids {UID_RANGE.start}-{UID_RANGE.stop - 1} are in use")


# --- seccomp ---------------------------------------------------------------------------------

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_AARCH64 = 0xC00000B7
X32_SYSCALL_BIT = 0x40000000
EPERM, ENOSYS = 1, 38
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
CLONE_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
DENIED = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "keyctl",
    "add_key",
    "request_key",
    "perf_event_open",
    "bpf",
    "userfaultfd",
    "setns",
    "unshare",
    "open_by_handle_at",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "pidfd_getfd",
    "kcmp",
)
SYSCALLS = {
    AUDIT_ARCH_X86_64: {
        "ptrace": 101,
        "process_vm_readv": 310,
        "process_vm_writev": 311,
        "mount": 165,
        "umount2": 166,
        "pivot_root": 155,
        "keyctl": 250,
        "add_key": 248,
        "request_key": 249,
        "perf_event_open": 298,
        "bpf": 321,
        "userfaultfd": 323,
        "setns": 308,
        "unshare": 272,
        "open_by_handle_at": 304,
        "open_tree": 428,
        "move_mount": 429,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "fspick": 433,
        "mount_setattr": 442,
        "pidfd_getfd": 438,
        "kcmp": 312,
        "clone": 56,
        "clone3": 435,
    },
    AUDIT_ARCH_AARCH64: {
        "ptrace": 117,
        "process_vm_readv": 270,
        "process_vm_writev": 271,
        "mount": 40,
        "umount2": 39,
        "pivot_root": 41,
        "keyctl": 219,
        "add_key": 217,
        "request_key": 218,
        "perf_event_open": 241,
        "bpf": 280,
        "userfaultfd": 282,
        "setns": 268,
        "unshare": 97,
        "open_by_handle_at": 265,
        "open_tree": 428,
        "move_mount": 429,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "fspick": 433,
        "mount_setattr": 442,
        "pidfd_getfd": 438,
        "kcmp": 272,
        "clone": 220,
        "clone3": 435,
    },
}


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)  # struct sock_filter


LD_ABS, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
NR, ARCH, ARG0 = 0, 4, 16  # offsets in struct seccomp_data (little-endian: low word of args[0])


def seccomp_program() -> bytes:
    """The classic BPF program bwrap loads (``--seccomp FD``): a sequence of sock_filter."""
    out = [_insn(LD_ABS, ARCH)]
    blocks = []
    for arch, numbers in SYSCALLS.items():
        block = [_insn(LD_ABS, NR)]
        if arch == AUDIT_ARCH_X86_64:  # x32 system calls: another ABI, another table
            block += [_insn(JGE, X32_SYSCALL_BIT, 0, 1), _insn(RET, RET_ERRNO | EPERM)]
        for name in DENIED:
            block += [_insn(JEQ, numbers[name], 0, 1), _insn(RET, RET_ERRNO | EPERM)]
        block += [_insn(JEQ, numbers["clone3"], 0, 1), _insn(RET, RET_ERRNO | ENOSYS)]
        block += [
            _insn(JEQ, numbers["clone"], 0, 3),
            _insn(LD_ABS, ARG0),
            _insn(JSET, CLONE_NAMESPACES, 0, 1),
            _insn(RET, RET_ERRNO | EPERM),
        ]
        block += [_insn(RET, RET_ALLOW)]
        blocks.append((arch, block))
    # arch dispatch: "jeq arch_i" falls through to a jump over the rest of the dispatch to block i
    n, offsets, position = len(blocks), [], 0
    for _, block in blocks:
        offsets.append(position)
        position += len(block)
    for i, (arch, _) in enumerate(blocks):
        # the jump sits at 2 + 2i; block i starts at 2 + 2n + offsets[i]
        out += [_insn(JEQ, arch, 0, 1), _insn(0x05, 2 * n - 2 * i - 1 + offsets[i])]  # BPF_JMP|BPF_JA
    out += [_insn(RET, RET_ERRNO | EPERM)]  # any other architecture (i386 compat, ...)
    for _, block in blocks:
        out += block
    return b"".join(out)


def seccomp_fd() -> int:
    """A readable descriptor (at offset 0) holding the program, for ``--seccomp``."""
    fd = os.memfd_create("grader-seccomp", 0)  # not CLOEXEC: bwrap inherits it through pass_fds
    os.write(fd, seccomp_program())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


# --- what the worker needs of the host ------------------------------------------------------


def _runtime_binds() -> tuple[str, list[tuple[str, str]], list[str]]:
    """(the interpreter to run inside, [(host path, sandbox path)], [more site-packages]) for
    Python and its packages. A judge started as ``python3.X`` with a virtual environment's
    site-packages added to its path (``site.addsitedir``, as the hostile suite's unprivileged
    run does) gets those folders bound too, at the same paths, and put on the worker's path."""
    binds = [(sys.base_prefix, sys.base_prefix)]
    if os.path.realpath(sys.base_exec_prefix) != os.path.realpath(sys.base_prefix):
        binds.append((sys.base_exec_prefix, sys.base_exec_prefix))
    executable = os.path.realpath(sys.executable)
    if sys.prefix != sys.base_prefix:  # a virtual environment, wherever it lives (the repository too)
        binds.append((sys.prefix, VENV_DIR))
        python = os.path.join(VENV_DIR, os.path.relpath(sys.executable, sys.prefix))
        if not os.path.realpath(executable).startswith(tuple(os.path.realpath(b[0]) + "/" for b in binds)):
            binds.append((os.path.dirname(executable), os.path.dirname(executable)))
    else:
        python = executable
        binds.append((os.path.dirname(executable), os.path.dirname(executable)))
        import site

        for path in site.getsitepackages():
            if os.path.isdir(path):
                binds.append((path, path))
    extra = extra_site_paths([source for source, _ in binds])
    binds += [(path, path) for path in extra]
    return python, binds, extra


def extra_site_paths(covered: list[str] = ()) -> list[str]:
    """site-packages folders on this process's ``sys.path`` that its interpreter would not find
    by itself (added with ``site.addsitedir``) and that lie outside ``covered``: the worker needs
    them on its path too."""
    import site

    covered = tuple(os.path.realpath(path).rstrip("/") + "/" for path in [*covered, *site.getsitepackages()])
    extra = []
    for path in sys.path:
        real = os.path.realpath(path) if path else ""
        if (
            os.path.basename(real) in ("site-packages", "dist-packages")
            and os.path.isdir(real)
            and not (real + "/").startswith(covered)
            and real not in extra
        ):
            extra.append(real)
    return extra


def _contains_repo(path: str, repo: Path) -> bool:
    real, repo_real = os.path.realpath(path), os.path.realpath(repo)
    return repo_real == real or repo_real.startswith(real.rstrip("/") + "/")


def command(
    isolation: Isolation,
    code_dir: Path,
    submission_dir: Path,
    seccomp: int | None,
    argv: list[str],
    env: dict,
    limits_nproc: int | None = None,
) -> list[str]:
    """The full command line: bwrap, its options, [setpriv], then ``argv`` (paths inside)."""
    cmd = [
        isolation.bwrap,
        "--die-with-parent",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "grader-worker",
    ]
    if isolation.mode == "unprivileged":
        cmd += ["--unshare-user", "--disable-userns"]
    else:
        cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
    made = set()

    def folders(target: str) -> list[str]:  # its missing parents, 0755 whatever bwrap's umask
        out = []
        parts = Path(target).parts
        for i in range(2, len(parts)):
            parent = str(Path(*parts[:i]))
            if parent not in made and parent not in SYSTEM_DIRS:
                made.add(parent)
                out += ["--perms", "0755", "--dir", parent]
        return out

    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            cmd += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            cmd += ["--ro-bind", path, path]
    for path in SYSTEM_FILES:
        cmd += folders(path) + ["--ro-bind-try", path, path]
    # The private tmpfs folders first: a bind below /tmp (a virtual environment there) goes on top.
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    for path, size in (("/tmp", TMP_BYTES), ("/var/tmp", SMALL_TMP_BYTES), ("/dev/shm", SMALL_TMP_BYTES)):
        cmd += ["--perms", "1777", "--size", str(size), "--tmpfs", path]
    for source, target in isolation.binds:
        cmd += folders(target) + ["--ro-bind", source, target]
    cmd += folders(CODE_DIR) + ["--ro-bind", str(code_dir), CODE_DIR, "--ro-bind", str(submission_dir), SUBMISSION_DIR]
    for path in filter(None, os.environ.get(EXTRA_BIND_ENV, "").split(os.pathsep)):
        if os.path.isdir(path):
            cmd += folders(path) + ["--bind", path, path]
    cmd += ["--chdir", "/tmp", "--clearenv"]
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    if seccomp is not None:
        cmd += ["--seccomp", str(seccomp)]
    cmd.append("--")
    if isolation.mode == "root":
        cmd += [
            isolation.setpriv,
            f"--reuid={isolation.uid}",
            f"--regid={isolation.uid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
        ]
    return cmd + argv


# --- probe -----------------------------------------------------------------------------------

_probed: Isolation | None = None


def probe(repo: Path, worker_uid: bool = True) -> Isolation:
    """Can workers be isolated here? (once per process; the result says how, or why not).

    ``worker_uid``: as root, take a uid for this process's workers (held until it exits);
    ``grade-all`` only asks whether isolation works (each grade takes its own uid).
    """
    global _probed
    if not worker_uid:
        return _probe(repo, worker_uid=False)
    if _probed is None:
        _probed = _probe(repo)
    return _probed


def _probe(repo: Path, worker_uid: bool = True) -> Isolation:
    mode = "root" if os.geteuid() == 0 else "unprivileged"
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return Isolation(mode=mode, reason=f"bubblewrap disabled ({DISABLE_ENV}={os.environ[DISABLE_ENV]})")
    if not sys.platform.startswith("linux"):
        return Isolation(mode=mode, reason="not Linux")
    bwrap = shutil.which("bwrap", path="/usr/bin:/usr/local/bin:/bin")
    if not bwrap:
        return Isolation(mode=mode, reason="bubblewrap (bwrap) is not installed")
    isolation = Isolation(available=True, mode=mode, bwrap=bwrap)
    if mode == "root":
        isolation.setpriv = shutil.which("setpriv", path="/usr/bin:/bin") or ""
        if not isolation.setpriv:
            return Isolation(mode=mode, reason="setpriv (util-linux) is not installed")
        try:
            isolation.uid = allocate_uid() if worker_uid else UID_RANGE.stop - 1  # (the probe's own run)
        except OSError as error:
            return Isolation(mode=mode, reason=f"no worker uid: {error}")
    isolation.python, isolation.binds, isolation.site_paths = _runtime_binds()
    for source, _ in isolation.binds:
        if _contains_repo(source, repo):
            return Isolation(mode=mode, reason=f"the interpreter's folder {source} contains the grader")
    import tempfile

    empty = Path(tempfile.mkdtemp(prefix="grader-probe-"))
    check = "import os, sys; sys.exit(0 if os.getuid() != 0 or sys.argv[1] == 'u' else 3)"
    argv = [isolation.python, "-I", "-B", "-c", check, "r" if mode == "root" else "u"]
    fd = seccomp_fd()
    try:
        done = subprocess.run(
            command(isolation, empty, empty, fd, argv, {"PATH": "/usr/bin:/bin"}),
            capture_output=True,
            text=True,
            timeout=60,
            pass_fds=(fd,),
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as error:
        return Isolation(mode=mode, reason=f"bubblewrap does not start: {error}"[:300])
    finally:
        os.close(fd)
        os.rmdir(empty)
    if done.returncode != 0:
        why = " ".join((done.stderr or f"exit status {done.returncode}").split())[:300]
        return Isolation(mode=mode, reason=f"bubblewrap cannot create the sandbox here: {why}")
    return isolation
