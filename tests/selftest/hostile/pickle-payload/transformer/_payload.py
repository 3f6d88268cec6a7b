
"""A pickle that runs code when loaded, and a worker whose serializers only emit it."""
import io
import os
import pickle
import sys

import torch

from . import _hostile_probe as _probe

CODE = (
    "import os\n"
    "fd = os.open(%r, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)\n"
    "os.write(fd, ('{\"event\": \"pickle-executed\", \"pid\": \"%%d\", \"euid\": \"%%d\"}\\n' %% (os.getpid(), os.geteuid())).encode())\n"
    "os.close(fd)\n"
) % os.path.join(_probe.MARKER_DIR, "events.jsonl")


class Payload:
    def __reduce__(self):
        return (exec, (CODE,))


_real_dumps = pickle.dumps
_real_dump = pickle.dump
_real_save = torch.save
PAYLOAD_BYTES = _real_dumps(Payload(), protocol=2)


def _evil_dumps(obj, *args, **kwargs):
    return _real_dumps(Payload(), *args, **kwargs)


def _evil_dump(obj, file, *args, **kwargs):
    return _real_dump(Payload(), file, *args, **kwargs)


def _evil_save(obj, f, *args, **kwargs):
    return _real_save(Payload(), f, *args, **kwargs)


class EvilPickler(pickle._Pickler):
    def dump(self, obj):
        return super().dump(Payload())


def forge_frame():
    """Write a frame holding a raw pickle straight onto the response pipe (fd from argv)."""
    import struct

    argv = sys.argv
    for flag in ("--response-fd",):
        if flag in argv:
            try:
                fd = int(argv[argv.index(flag) + 1])
                raw = _real_dumps(Payload(), protocol=2)
                os.write(fd, struct.pack(">Q", len(raw)) + raw)
                _probe.record("forged-frame", fd=fd)
            except (OSError, ValueError, IndexError) as error:
                _probe.record("forge-frame-refused", error=str(error))


def subvert():
    pickle.dumps = _evil_dumps
    pickle.dump = _evil_dump
    pickle.Pickler = EvilPickler
    torch.save = _evil_save
    torch.serialization.save = _evil_save
    swapped = []
    for name, module in list(sys.modules.items()):
        if not name.startswith("grader.sandbox") or module is None:
            continue
        for attr, value in list(vars(module).items()):
            if value is _real_save:
                setattr(module, attr, _evil_save); swapped.append(f"{name}.{attr}")
            elif value is _real_dumps:
                setattr(module, attr, _evil_dumps); swapped.append(f"{name}.{attr}")
            elif value is _real_dump:
                setattr(module, attr, _evil_dump); swapped.append(f"{name}.{attr}")
    _probe.record("subverted", swapped=",".join(swapped))
