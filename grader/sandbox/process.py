"""Starting, limiting and killing the worker process.

Each mechanism here answers one threat from code we run but do not trust:

* **Separate process, own session** (``start_new_session``): a crash, ``os._exit`` or
  ``sys.exit`` kills the worker, not the judge; at the end the whole process group (and
  anything still in the worker's session) is SIGKILLed, so forked children do not linger.
* **Fresh temporary directory** as cwd and ``HOME``/``TMPDIR``: files the code writes go
  there and are deleted afterwards. It holds a *copy* of the worker's own code and of the
  submission's ``.py`` files — nothing of the judge, the tests or the reference solution.
* **Scrubbed environment** and ``python -I -B`` (isolated mode: no ``PYTHON*`` variables, no
  user site-packages, no script directory on ``sys.path``): the host's configuration cannot
  inject code into the worker, and the worker learns nothing from the judge's environment.
* **Resource limits** (``setrlimit`` in ``preexec_fn``): CPU seconds, address space (memory),
  size of files written, open files, and — when the worker runs as its own user — number of
  processes. Plus a wall-clock deadline on every request, enforced by the judge.
* **Captured output**: stdout/stderr go to files in a directory private to the judge, capped by
  ``RLIMIT_FSIZE`` and read back truncated; they never reach the judge's terminal.
* **Namespaces** (``isolation.py``, whenever bubblewrap works: as root or through
  unprivileged user namespaces): the worker runs in ``bwrap`` with its own mount, PID, IPC, UTS
  and network namespaces, sees read-only only the interpreter, its packages, its code copy and
  its submission copy, gets private ``/tmp``, ``/var/tmp``, ``/dev/shm`` that vanish with it and
  a seccomp filter; as root it also runs as a uid of its own grade. Everything below about
  ``graderworker`` is the fallback where bubblewrap is unavailable.
* **Privilege separation** (fallback, only when the judge runs as root): the worker
  runs as the unprivileged system user ``graderworker`` (created on demand). Its home is
  the only place it can write, the code and submission copies are read-only to it, and the
  judge makes ``grader/``, ``tests/``, ``solutions/`` and ``.git/`` unreadable to others
  (``hide_from_worker``), so the hidden tests and the reference cannot be read. The results
  file is written by the judge into a directory the worker cannot write, after the worker is
  dead. When the interpreter itself is not reachable by an unprivileged user (for example a
  Python under ``/root``) the drop is skipped and the reason recorded in ``results.json``.

When *not* root, what still holds: process, session and resource isolation, the scrubbed
environment, the data-only protocol and judge-side scoring. What does not: the worker runs
as the grading user, so it can read whatever that user can read (including the tests) and
could signal that user's other processes; ``RLIMIT_NPROC`` is not set (it would count all of
that user's processes). A process that double-forks *and* leaves its session escapes the
final kill (its CPU time is still capped by ``RLIMIT_CPU``); a container (Gradescope) or a
cgroup closes that gap.
"""

from __future__ import annotations

import os
import pwd
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from grader.sandbox import isolation as namespaces

GRADER_DIR = Path(__file__).resolve().parent.parent  # .../grader
REPO_ROOT = GRADER_DIR.parent
WORKER_USER = "graderworker"
# What the worker needs of the grader, copied into its temporary directory (the originals
# may be unreadable to it). Packages that do not exist yet are skipped.
WORKER_FILES = ("contract.py", "sandbox/worker.py", "sandbox/protocol.py", "sandbox/tripwires.py")
WORKER_PACKAGES = ("runtime", "translation")
OUTPUT_TAIL_BYTES = 64 * 1024
GiB = 1024**3


@dataclass
class Limits:
    """Resource limits for one worker (and the deadlines the judge enforces around it)."""

    call_s: float = 60.0  # wall clock for one request
    cpu_s: int = 900  # RLIMIT_CPU: CPU seconds, all threads together
    memory_bytes: int = 6 * GiB  # RLIMIT_AS: torch imports in ~1.5 GiB of address space
    file_bytes: int = 64 * 1024 * 1024  # RLIMIT_FSIZE: largest file it may write (stdout included)
    open_files: int = 256  # RLIMIT_NOFILE
    processes: int = 512  # RLIMIT_NPROC, only with a dedicated user (threads count too)
    threads: int = 1  # torch intra-op threads
    startup_s: float = 60.0  # wall clock to import torch and say hello

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class SandboxUser:
    """Who the worker runs as and with which interpreter.

    ``uid is None``: no privilege drop (``reason`` says why). ``python``/``extra_paths``: the
    interpreter the worker runs and site-packages directories put in front of its
    ``sys.path`` — the judge's own interpreter, or (when that one is unreachable for the
    worker's user, as with a pyenv under ``/root``) a reachable system Python of the *same*
    major.minor version using the judge's site-packages (extension modules are ABI-compatible
    within a minor version). ``network_isolated``: the worker gets its own network namespace
    (only a downed loopback), which needs root.
    """

    uid: int | None = None
    gid: int | None = None
    name: str | None = None
    reason: str = ""
    hidden_paths: list[str] = field(default_factory=list)
    python: str = sys.executable
    extra_paths: list[str] = field(default_factory=list)
    network_isolated: bool = False
    isolation: namespaces.Isolation | None = None  # bubblewrap, when available (then uid is None)

    @property
    def active(self) -> bool:
        """The fallback's privilege drop to ``graderworker`` is on."""
        return self.uid is not None

    @property
    def isolated(self) -> bool:
        return self.isolation is not None and self.isolation.available

    def as_dict(self) -> dict:
        info = {
            "privilege_drop": self.active,
            "user": self.name,
            "reason": self.reason,
            "hidden_from_worker": self.hidden_paths,
            "worker_python": self.python,
            "network_isolated": self.network_isolated,
        }
        if self.isolation is not None:
            info.update(self.isolation.as_dict())
        if self.isolated:
            iso = self.isolation
            info.update(
                privilege_drop=iso.mode == "root",
                worker_python=iso.python,
                user=f"uid {iso.uid}" if iso.mode == "root" else "grading user (user namespace)",
            )
        return info


def _reachable_by_others(path: Path) -> bool:
    """Could a user with no special group read ``path`` (every directory above it: o+x)?"""
    path = Path(os.path.realpath(path))
    try:
        for parent in list(path.parents)[::-1]:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
        return bool(os.stat(path).st_mode & stat.S_IROTH)
    except OSError:
        return False


def _site_packages() -> list[str]:
    """The judge's site-packages directories (real paths), where torch & co live."""
    import site

    paths = []
    for path in site.getsitepackages():
        real = os.path.realpath(path)
        if os.path.isdir(real) and real not in paths:
            paths.append(real)
    return paths


def _worker_python() -> tuple[str, list[str]] | str:
    """(interpreter, extra sys.path entries) an unprivileged user can run, or why there is none."""
    import importlib.util

    torch_origin = importlib.util.find_spec("torch").origin  # where torch lives, without importing it
    if not _reachable_by_others(Path(torch_origin)):
        return f"an unprivileged user cannot reach torch ({os.path.realpath(torch_origin)})"
    if _reachable_by_others(Path(sys.executable)):
        return sys.executable, []
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        if not (os.path.isfile(candidate) and _reachable_by_others(Path(candidate))):
            continue
        probe = subprocess.run(
            [candidate, "-I", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate, _site_packages()
    return (
        f"an unprivileged user cannot reach the Python interpreter ({os.path.realpath(sys.executable)}) "
        f"and there is no reachable python{version} to use instead"
    )


def _network_namespaces_work() -> bool:
    """Can this (root) process give a child its own network namespace?"""
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-I",
                "-c",
                "import ctypes, sys; sys.exit(ctypes.CDLL(None, use_errno=True).unshare(0x40000000) != 0)",
            ],
            capture_output=True,
            timeout=30,
        )
        return done.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def sandbox_user(enabled: bool = True) -> SandboxUser:
    """How workers run: in bubblewrap when it works here, else the fallback (``fallback_user``)."""
    isolation = namespaces.probe(REPO_ROOT)
    if isolation.available:
        return SandboxUser(isolation=isolation, network_isolated=True)
    user = fallback_user(enabled)
    user.isolation = isolation
    return user


def fallback_user(enabled: bool = True) -> SandboxUser:
    """Find (or create) the worker's user when running as root; explain when not possible."""
    if not enabled:
        return SandboxUser(reason="privilege drop disabled (--no-privilege-drop)")
    if os.geteuid() != 0:
        return SandboxUser(
            reason="the grader is not running as root, so the worker runs as the grading user "
            "(no privilege drop, no network isolation)",
            extra_paths=namespaces.extra_site_paths(),
        )
    network = _network_namespaces_work()
    runtime = _worker_python()
    if isinstance(runtime, str):
        return SandboxUser(reason=runtime + "; the worker runs as root", network_isolated=network)
    python, extra_paths = runtime
    try:
        entry = pwd.getpwnam(WORKER_USER)
    except KeyError:
        try:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", WORKER_USER],
                check=True,
                capture_output=True,
                timeout=30,
            )
            entry = pwd.getpwnam(WORKER_USER)
        except (OSError, subprocess.SubprocessError, KeyError) as error:
            return SandboxUser(
                reason=f"could not create the user {WORKER_USER}: {error}"[:300], network_isolated=network
            )
    return SandboxUser(
        uid=entry.pw_uid,
        gid=entry.pw_gid,
        name=WORKER_USER,
        python=python,
        extra_paths=extra_paths,
        network_isolated=network,
    )


def hide_from_worker(user: SandboxUser, paths: list[Path]) -> None:
    """Remove the 'other' permission bits of ``paths`` so the worker's user cannot read them.

    Only when the worker really runs as its own user; root (the judge) keeps full access.
    Idempotent; what was changed is recorded in ``user.hidden_paths``.
    """
    if not user.active:
        return
    for path in paths:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue
        if mode & 0o007:
            os.chmod(path, stat.S_IMODE(mode) & ~0o007)
        user.hidden_paths.append(str(path))


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this (child) process when its parent dies (best effort)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _enter_sandbox(limits: Limits, user: SandboxUser) -> None:
    """Runs in the child between fork and exec, still as the judge's user (root or not).

    With bubblewrap the child execs ``bwrap`` (namespaces, then ``setpriv`` to the grade's uid
    as root): the limits set here are inherited by the worker; ``RLIMIT_NPROC`` counts the
    processes of the grade's own uid (root itself is exempt, so bwrap's set-up is not limited).
    """
    if user.isolated:
        os.umask(0o022)  # the folders bwrap creates in the new root (/sandbox, /venv, parents of binds)
        _set_limits(limits)
        if user.isolation.mode == "root":
            _cap(resource.RLIMIT_NPROC, int(limits.processes))
        die_with_parent()
        return
    if user.network_isolated:  # needs root, so before the drop
        import ctypes

        if ctypes.CDLL(None, use_errno=True).unshare(0x40000000) != 0:  # CLONE_NEWNET
            os._exit(126)

    _set_limits(limits)
    if user.active:
        os.setgroups([])
        os.setgid(user.gid)
        os.setuid(user.uid)  # irreversible: from here on the child is graderworker
        _cap(resource.RLIMIT_NPROC, int(limits.processes))
    die_with_parent()  # after setuid, which clears it; a judge that is killed takes its worker along


def _cap(kind, value) -> None:
    soft, hard = resource.getrlimit(kind)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(kind, (value, value))


def _set_limits(limits: Limits) -> None:
    _cap(resource.RLIMIT_CPU, int(limits.cpu_s))
    _cap(resource.RLIMIT_AS, int(limits.memory_bytes))
    _cap(resource.RLIMIT_FSIZE, int(limits.file_bytes))
    _cap(resource.RLIMIT_NOFILE, int(limits.open_files))
    _cap(resource.RLIMIT_CORE, 0)


def _copy_worker_code(destination: Path) -> None:
    (destination / "grader" / "sandbox").mkdir(parents=True)
    (destination / "grader" / "__init__.py").write_text('"""Worker copy of the grader (trusted helpers only)."""\n')
    (destination / "grader" / "sandbox" / "__init__.py").write_text("")
    for name in WORKER_FILES:
        shutil.copy2(GRADER_DIR / name, destination / "grader" / name)
    for package in WORKER_PACKAGES:
        source = GRADER_DIR / package
        if source.is_dir():
            shutil.copytree(
                source, destination / "grader" / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )


def _clean_env(home: Path, threads: int) -> dict:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(home),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "OMP_WAIT_POLICY": "PASSIVE",  # idle OpenMP threads sleep instead of spinning between requests
    }


def _rmtree(path: Path) -> None:
    def retry(function, name, _):
        try:
            os.chmod(os.path.dirname(name), 0o700)
            os.chmod(name, 0o700)
            function(name)
        except OSError:
            pass

    shutil.rmtree(path, onerror=retry)


class WorkerProcess:
    """One running worker: its process, pipes, capture files and temporary directories."""

    def __init__(self, package_dir: Path, part: str, limits: Limits, user: SandboxUser):
        self.part = part
        self.limits = limits
        self.killed_by_us: str | None = None  # why we killed it ("timeout", "protocol", "closed")
        # The judge's private directory (0700): capture files the worker cannot reopen.
        self.private = Path(tempfile.mkdtemp(prefix=f"grader-judge-{part}-"))
        # The worker's directory: code and submission read-only to it, home writable. With
        # bubblewrap it stays 0700 (only bound into the worker's own mount namespace: no other
        # grade's worker can reach it); the fallback needs it traversable by graderworker.
        self.isolated = user.isolated
        self.root = Path(tempfile.mkdtemp(prefix=f"grader-worker-{part}-"))
        _copy_worker_code(self.root / "code")
        shutil.copytree(package_dir, self.root / "submission" / "transformer")
        if self.isolated:  # readable by the grade's uid inside, through the binds only
            for path in [*self.root.rglob("*")]:
                os.chmod(path, 0o755 if path.is_dir() else 0o644)
        else:
            os.chmod(self.root, 0o755)
        home = self.root / "home"
        home.mkdir(mode=0o700)
        if user.active:
            os.chown(home, user.uid, user.gid)
        self.stdout = open(self.private / "stdout", "wb")
        self.stderr = open(self.private / "stderr", "wb")
        request_read, self.request_fd = os.pipe()
        self.response_fd, response_write = os.pipe()
        code_root = namespaces.CODE_DIR if self.isolated else str(self.root / "code")
        package = (namespaces.SUBMISSION_DIR if self.isolated else str(self.root / "submission")) + "/transformer"
        command = [
            user.isolation.python if self.isolated else user.python,
            "-I",
            "-B",
            code_root + "/grader/sandbox/worker.py",
            "--request-fd",
            str(request_read),
            "--response-fd",
            str(response_write),
            "--code-root",
            code_root,
            "--package-dir",
            package,
            "--part",
            part,
            "--threads",
            str(limits.threads),
        ]
        for path in user.isolation.site_paths if self.isolated else user.extra_paths:
            command += ["--extra-path", path]
        pass_fds = [request_read, response_write]
        env = _clean_env(home, limits.threads)
        if self.isolated:
            env = _clean_env(Path("/tmp"), limits.threads)
            seccomp = namespaces.seccomp_fd()
            pass_fds.append(seccomp)
            command = namespaces.command(
                user.isolation, self.root / "code", self.root / "submission", seccomp, command, env
            )
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=self.stdout,
                stderr=self.stderr,
                pass_fds=pass_fds,
                close_fds=True,
                cwd=home,
                env=env,
                start_new_session=True,
                preexec_fn=lambda: _enter_sandbox(limits, user),
            )
        finally:
            for fd in pass_fds:
                os.close(fd)
        _LIVE_WORKERS.add(self.process.pid)
        os.set_blocking(self.request_fd, False)
        os.set_blocking(self.response_fd, False)
        self.started = time.monotonic()
        self.greeted = False

    # --- talking ---------------------------------------------------------------------------

    def wait_ready(self, deadline: float) -> dict:
        """Wait for the worker's hello (it has imported torch and installed the tripwires)."""
        reply = self.receive(min(deadline, self.started + self.limits.startup_s))
        self.greeted = True
        return reply

    def send(self, payload: bytes, deadline: float) -> None:
        from grader.sandbox import protocol  # imports torch: only where a worker is talked to

        protocol.write_message(self.request_fd, payload, deadline)

    def receive(self, deadline: float, max_bytes: int | None = None) -> bytearray:
        """One message as bytes (the hello), refused unread when it announces more than
        ``max_bytes`` (default: the cap of a reply to a test's call, ``protocol.REPLIES``)."""
        from grader.sandbox import protocol

        if max_bytes is None:
            max_bytes = protocol.REPLIES.message_bytes
        return protocol.read_message(self.response_fd, deadline, max_bytes)

    def receive_reply(self, deadline: float, limits, tag_hook=None):
        """One reply, checked and decoded while it is read (``protocol.read_value``)."""
        from grader.sandbox import protocol

        return protocol.read_value(self.response_fd, deadline, limits, tag_hook)

    # --- ending ----------------------------------------------------------------------------

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self, why: str = "closed") -> None:
        """SIGKILL the worker's process group and anything left in its session; clean up."""
        if self.killed_by_us is None and self.alive():
            self.killed_by_us = why
        for target in (self.process.pid,):
            try:
                os.killpg(target, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        _kill_session(self.process.pid)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        _LIVE_WORKERS.discard(self.process.pid)
        sweep_orphans()
        for fd in (self.request_fd, self.response_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.request_fd = self.response_fd = -1

    def cleanup(self) -> None:
        if self.request_fd != -1:
            self.kill()
        for f in (self.stdout, self.stderr):
            f.close()
        _rmtree(self.root)
        _rmtree(self.private)

    def output_tail(self, which: str = "stderr", limit: int = OUTPUT_TAIL_BYTES) -> str:
        path = self.private / which
        try:
            with open(path, "rb") as f:
                f.seek(max(0, os.path.getsize(path) - limit))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def death(self) -> str:
        """Why the worker is gone, in a student's words."""
        code = self.process.poll()
        if self.isolated and code is not None and code > 128:
            code = 128 - code  # bwrap reports a worker killed by signal N as exit status 128 + N
        if self.killed_by_us == "timeout":
            return "ran out of time"
        if code is None:
            return "stopped answering"
        if code < 0:
            signal_number = -code
            if signal_number == signal.SIGKILL:
                return "was killed (most likely it ran out of memory)"
            if signal_number == signal.SIGXCPU:
                return f"ran out of CPU time (limit: {self.limits.cpu_s} s)"
            if signal_number == signal.SIGXFSZ:
                return "wrote a file (or printed) more than the size limit"
            if signal_number == signal.SIGSEGV:
                return "crashed (segmentation fault)"
            try:
                return f"was killed by signal {signal.Signals(signal_number).name}"
            except ValueError:
                return f"was killed by signal {signal_number}"
        return f"exited with status {code} (does your code call sys.exit(), exit() or os._exit()?)"


def _processes():
    """(pid, fields of /proc/<pid>/stat after "(comm)": state ppid pgrp session ...) of every process."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                yield int(entry), f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def _kill_session(session_id: int) -> None:
    """SIGKILL every process whose session is the worker's (children that left its group)."""
    for pid, fields in _processes():
        try:
            if int(fields[3]) == session_id:
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            continue


# --- orphans ---------------------------------------------------------------------------------
#
# A process that double-forks and calls setsid() leaves the worker's group and session, so
# killing those misses it. The judge therefore makes itself a *child subreaper*: every orphan
# of its descendants is reparented to the judge instead of to init, where the judge finds it
# (parent pid == judge) and kills it — with everything below it — after each worker ends and
# before results.json is written.

_LIVE_WORKERS: set[int] = set()
_subreaper = False


def become_subreaper() -> bool:
    """Make this process the reaper of its descendants' orphans (Linux; best effort)."""
    global _subreaper
    try:
        import ctypes

        _subreaper = ctypes.CDLL(None, use_errno=True).prctl(36, 1) == 0  # PR_SET_CHILD_SUBREAPER
    except Exception:
        _subreaper = False
    return _subreaper


def stop_being_subreaper() -> None:
    global _subreaper
    if _subreaper:
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(36, 0)
        except Exception:
            pass
    _subreaper = False


def _children_of(pid: int) -> list[int]:
    found = []
    for child, fields in _processes():
        try:
            if int(fields[1]) == pid:
                found.append(child)
        except (ValueError, IndexError):
            continue
    return found


def sweep_orphans(rounds: int = 20) -> int:
    """As subreaper, SIGKILL every child that is not a live worker, and its descendants."""
    if not _subreaper:
        return 0
    killed = 0
    me = os.getpid()
    for _ in range(rounds):
        targets = [pid for pid in _children_of(me) if pid not in _LIVE_WORKERS]
        stack, tree = list(targets), []
        while stack:  # stop the whole tree first, so nobody forks while we kill
            pid = stack.pop()
            tree.append(pid)
            try:
                os.kill(pid, signal.SIGSTOP)
            except (ProcessLookupError, PermissionError):
                pass
            stack.extend(_children_of(pid))
        if not tree:
            break
        for pid in tree:
            try:
                dead = _is_zombie(pid)  # already ended (a probe's bwrap, say): reaped below, not "left behind"
                os.kill(pid, signal.SIGKILL)
                killed += not dead
            except (ProcessLookupError, PermissionError):
                pass
        for pid in targets:  # they are our children now: reap them
            try:
                os.waitpid(pid, 0)
            except (ChildProcessError, OSError):
                pass
        time.sleep(0.01)
    return killed
