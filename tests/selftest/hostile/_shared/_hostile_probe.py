"""Instrumentation of the hostile self-test (not part of any attack's logic).

The test copies this submission into a fresh folder and replaces the @@...@@ placeholders:
MARKER_DIR is a world-writable folder where the attack records what it reached (one JSON
line per event, with the pid and uid of the process that ran it), TOKEN is unique to the run,
REAL_REPO is the developer's checkout, which attacks must never write to (the test grades a
copy of the repository; the copy is what they attack).
"""
import os
import sys
import time

MARKER_DIR = "@@MARKER_DIR@@"
TOKEN = "@@TOKEN@@"
REAL_REPO = "@@REAL_REPO@@"


def _quote(value):
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + text + '"'


def record(event, **info):
    """Append one event (hand-written JSON: the json module may be shadowed or patched)."""
    fields = {
        "event": event,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "time": time.time(),
        "argv0": sys.argv[0] if sys.argv else "",
    }
    fields.update(info)
    line = "{" + ", ".join(_quote(k) + ": " + _quote(v) for k, v in fields.items()) + "}\n"
    try:
        fd = os.open(os.path.join(MARKER_DIR, "events.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, line.encode("utf-8", "replace"))
        finally:
            os.close(fd)
    except OSError:
        pass


def ancestors():
    """(pid, cmdline as a list) of every ancestor process that this one may read."""
    result = []
    pid = os.getppid()
    seen = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read().decode()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        result.append((pid, argv))
        pid = parent
    return result


def grader_ancestors():
    """The ancestors that look like the grader (their command line mentions it)."""
    found = []
    for pid, argv in ancestors():
        line = " ".join(argv)
        if "grader" not in line:
            break
        found.append((pid, argv))
    return found


def output_dirs():
    """Where the judge will write results.json: the --out argument of a grader ancestor."""
    dirs = []
    for pid, argv in grader_ancestors():
        for i, arg in enumerate(argv):
            if arg == "--out" and i + 1 < len(argv):
                value = argv[i + 1]
            elif arg.startswith("--out="):
                value = arg.split("=", 1)[1]
            else:
                continue
            if not os.path.isabs(value):
                try:
                    value = os.path.join(os.readlink(f"/proc/{pid}/cwd"), value)
                except OSError:
                    pass
            dirs.append(value)
    return dirs


def _looks_like_repo(path):
    return os.path.isfile(os.path.join(path, "grader", "rubric.toml")) or os.path.isdir(
        os.path.join(path, "tests", "public")
    )


def candidate_roots(for_writing=False):
    """Every folder that may be the grader's repository, found by every trick we know."""
    guesses = []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None) or ""
        if name.split(".")[0] in ("grader", "tests") and path:
            guesses.append(path)
    guesses += list(sys.path)
    guesses += [os.getcwd(), os.path.dirname(os.path.abspath(__file__)), sys.prefix, sys.executable]
    guesses += [os.environ.get(k, "") for k in ("PWD", "OLDPWD", "HOME", "VIRTUAL_ENV", "PYTHONPATH", "GITHUB_WORKSPACE", "CI_PROJECT_DIR")]
    for pid, argv in ancestors():
        guesses += argv
        for link in ("cwd", "root", "exe"):
            try:
                guesses.append(os.readlink(f"/proc/{pid}/{link}"))
            except OSError:
                pass
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                guesses += [kv.split(b"=", 1)[-1].decode("utf-8", "replace") for kv in f.read().split(b"\0")]
        except OSError:
            pass
    roots = []
    for guess in guesses:
        if not guess or not guess.startswith("/"):
            continue
        path = guess
        for _ in range(8):
            if _looks_like_repo(path) and path not in roots:
                roots.append(path)
            parent = os.path.dirname(path)
            if parent == path:
                break
            path = parent
    if for_writing:
        real = os.path.realpath(REAL_REPO) if REAL_REPO and not REAL_REPO.startswith("@@") else None
        roots = [r for r in roots if os.path.realpath(r) != real]
    return roots
