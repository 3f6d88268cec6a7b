
"""Shadows the standard-library module of the same name: records who imported it, then
puts the real module in its place so that the importer keeps working."""
import posix as _posix
import sys as _sys

_fd = _posix.open("@@MARKER_DIR@@/events.jsonl", _posix.O_WRONLY | _posix.O_APPEND | _posix.O_CREAT, 0o666)
_posix.write(_fd, ('{"event": "shadow-imported", "module": "%s", "pid": "%d", "euid": "%d"}\n'
                   % (__name__, _posix.getpid(), _posix.geteuid())).encode())
_posix.close(_fd)

import importlib.machinery as _machinery
import importlib.util as _util

_here = __file__.rsplit("/", 1)[0]
_path = [p for p in _sys.path if (p or ".").rstrip("/") != _here.rstrip("/") and p not in ("", ".")]
_spec = _machinery.PathFinder.find_spec(__name__, _path)
if _spec is not None:
    _real = _util.module_from_spec(_spec)
    _sys.modules[__name__] = _real
    _spec.loader.exec_module(_real)
    globals().update({k: v for k, v in vars(_real).items() if k not in ("__name__", "__file__", "__spec__", "__loader__")})
