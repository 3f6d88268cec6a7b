"""Forged replies on the worker's response pipe (the attack's machinery).

At import, the worker's own ``grader.sandbox.protocol.pack`` (which the worker looks up at call
time) is replaced: once a mask function has run ("armed"), the next reply the worker sends is
a hand-made frame instead of the honest one. Which forgery is sent is chosen by a counter kept
in the marker folder, so that the successive workers of one grade (each crash starts a fresh
one) send the forgeries in turn. Everything is written by hand with ``struct`` and ``json``:
the frame is an 8-byte big-endian length; the message is a safetensors file (8-byte
little-endian header length, JSON header with the body in ``__metadata__``, tensor bytes).
"""
import json
import os
import struct
import sys

from . import _hostile_probe as _probe

_state = {"armed": False}
COUNTER = os.path.join(_probe.MARKER_DIR, "reply-counter")
GiB = 1 << 30


def frame(message: bytes) -> bytes:
    return struct.pack(">Q", len(message)) + message


def message(body: str, tensors=(), data=b"", raw_header=None) -> bytes:
    """A safetensors message: ``body`` is the JSON text of the reply, ``tensors`` (dtype, shape,
    start, end) per tensor "0", "1", ..."""
    if raw_header is None:
        header = {"__metadata__": {"body": body}}
        for number, (dtype, shape, start, end) in enumerate(tensors):
            header[str(number)] = {"dtype": dtype, "shape": shape, "data_offsets": [start, end]}
        raw_header = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(raw_header)) + raw_header + data


def reply(value_json: str) -> str:
    """The JSON text of an honest-looking reply whose value is ``value_json``."""
    return '{"__dict__":[["ok",true],["value",' + value_json + '],["violations",[]]]}'


def _next_number() -> int:
    try:
        with open(COUNTER) as f:
            number = int(f.read() or 0)
    except (OSError, ValueError):
        number = 0
    try:
        with open(COUNTER, "w") as f:
            f.write(str(number + 1))
    except OSError:
        pass
    return number


def install(forgeries):
    """``forgeries``: [(name, function returning the frame bytes)], sent in turn."""
    protocol = sys.modules.get("grader.sandbox.protocol")
    if protocol is None:
        _probe.record("reply-forge-failed", why="no grader.sandbox.protocol in the worker")
        return
    real_pack, real_write = protocol.pack, protocol.write_message

    def forged_write(fd, payload, deadline=None):
        if not _state["armed"]:
            return real_write(fd, payload, deadline)
        _state["armed"] = False
        name, make = forgeries[_next_number() % len(forgeries)]
        data = make()
        _probe.record("reply-forged", variant=name, bytes=len(data))
        view = memoryview(data)
        while view:  # blocks until the judge reads, or kills us
            view = view[os.write(fd, view):]

    protocol.write_message = forged_write
    _probe.record("reply-forge-installed", real_pack=getattr(real_pack, "__name__", "?"))


def arm():
    _state["armed"] = True
