
"""Shadows a module of the grader or of the trusted tests (see NOTE.md)."""
import os

_fd = os.open("@@MARKER_DIR@@/events.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
os.write(_fd, ('{"event": "shadow-imported", "module": "%s", "pid": "%d", "euid": "%d"}\n'
               % (__name__, os.getpid(), os.geteuid())).encode())
os.close(_fd)
