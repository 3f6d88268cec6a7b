"""Spin forever."""

import signal
import time

from . import _hostile_probe as _probe


def _ignore_signals():
    for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGXCPU", "SIGALRM", "SIGUSR1", "SIGUSR2", "SIGPIPE", "SIGVTALRM", "SIGPROF"):
        try:
            signal.signal(getattr(signal, name), signal.SIG_IGN)
        except (OSError, ValueError, AttributeError):
            pass


def _spin(what):
    """Burn CPU forever; swallow every exception a time-out might raise inside."""
    _ignore_signals()
    _probe.record("looping", what=what)
    while True:
        try:
            while True:
                pass
        except BaseException as error:  # noqa: BLE001 - that is the point
            _probe.record("loop-caught", error=repr(error))
