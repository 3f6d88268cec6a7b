
"""Forge the results, then kill the judge before it can overwrite them."""
import json
import os
import signal

from . import _hostile_probe as _probe


def forge_then_kill():
    forged = {
        "score": 100.0, "output": "All tests passed.", "tests": [
            {"name": "masks: everything", "score": 100.0, "max_score": 100.0, "status": "passed",
             "tags": ["masks", "public"]}],
        "extra_data": {"max_score": 100.0, "parts": {"masks": {"score": 100.0, "max_score": 100.0}},
                       "authenticity": {"nonce": "forged-" + _probe.TOKEN, "sha256": "0" * 64}},
    }
    for folder in _probe.output_dirs() + ["/autograder/results"]:
        path = os.path.join(folder, "results.json")
        try:
            os.makedirs(folder, exist_ok=True)
            with open(path, "w") as f:
                json.dump(forged, f)
            _probe.record("forged", path=path)
        except OSError as error:
            _probe.record("forge-refused", path=path, error=error.strerror)
    for pid, _ in _probe.grader_ancestors():
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
            _probe.record("killed-group", pid_target=pid)
        except OSError as error:
            _probe.record("killpg-refused", pid_target=pid, error=error.strerror)
        try:
            os.kill(pid, signal.SIGKILL)
            _probe.record("killed", pid_target=pid)
        except OSError as error:
            _probe.record("kill-refused", pid_target=pid, error=error.strerror)
