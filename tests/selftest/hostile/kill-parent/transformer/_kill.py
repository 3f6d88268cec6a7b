
"""Kill the judge: parent, parent's process group, and every grader ancestor."""
import os
import signal

from . import _hostile_probe as _probe


def kill_the_judge(where):
    targets = [os.getppid()] + [pid for pid, _ in _probe.grader_ancestors()]
    for pid in dict.fromkeys(targets):
        if pid <= 1:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
            _probe.record("killed", where=where, pid_target=pid)
        except OSError as error:
            _probe.record("kill-refused", where=where, pid_target=pid, error=error.strerror)
        try:
            group = os.getpgid(pid)
            if group > 1 and group != os.getpgid(0):
                os.killpg(group, signal.SIGKILL)
                _probe.record("killed-group", where=where, group=group)
        except OSError as error:
            _probe.record("killpg-refused", where=where, pid_target=pid, error=error.strerror)
