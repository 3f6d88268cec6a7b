"""The wire between the judge and the sandboxed worker: framing and a data-only codec.

Both sides import this file; the worker runs a *copy* of it, so it imports nothing from the
rest of the grader.

Threat model. The worker runs student code, so every byte it sends back is attacker-controlled.
Reading such bytes must never execute code, exhaust the judge's memory, or produce objects
whose methods the student wrote. Hence:

* **Framing.** Messages travel on dedicated pipes (never stdout: student ``print``s land there)
  as an 8-byte big-endian length followed by the payload. A length above ``MAX_MESSAGE_BYTES``
  is refused before a single payload byte is read. The judge's reads and writes take a
  deadline, so a worker that stops talking cannot hang the judge.

* **Codec.** Payloads are written with ``torch.save`` and read with
  ``torch.load(weights_only=True)``, PyTorch's restricted unpickler that rebuilds only tensors
  and plain containers and refuses every other class — no ``pickle.loads`` anywhere. What it
  returns is then walked node by node: only ``None/bool/int/float/str``, lists, plain dense
  tensors and *tagged* dicts may appear. Every dict on the wire is a tag with exactly one key
  (``{"__tuple__": [...]}``, ``{"__dict__": [[key, value], ...]}``, ``{"__handle__": [...]}``,
  ...), so a plain dict can never be mistaken for a tag. Tensors are re-created as plain
  ``torch.Tensor`` copies (``clone()``), never a subclass, and only in allowed dtypes.

A message is ``torch.save({"body": ..., "buffers": {dtype: 1-D tensor}, "meta": int64 tensor})``:
the tensors of the body are packed into one flat buffer per dtype and referenced by number,
``{"__tensor__": 7}``, their layouts listed in ``meta`` (a few tensors instead of hundreds of
objects keeps the pure-Python restricted unpickler fast); the reader checks every layout
against its buffer's bounds and an element budget, and copies the tensor out.

Tags understood here (both directions): ``__tensor__``, ``__tuple__``, ``__dict__``,
``__namedtuple__``, ``__dtype__``, ``__device__``, ``__slice__``. The two ends add their own through hooks: the
worker sends ``__handle__``/``__method__`` (references to objects that stay in the worker),
the judge sends ``__handle__``/``__method__`` back and ``__trusted__`` (a trusted module to
re-create in the worker).
"""
from __future__ import annotations

import collections
import io
import keyword
import math
import os
import select
import struct
import threading
import time

import torch

MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # a bigger reply is refused (and the worker killed)
MAX_DEPTH = 64  # nesting depth of containers
MAX_NODES = 1_000_000  # containers + leaves in one message
HEADER = struct.Struct(">Q")

ALLOWED_DTYPES = {
    torch.float16, torch.bfloat16, torch.float32, torch.float64,
    torch.complex64, torch.complex128,
    torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool,
}
DTYPE_NAMES = {str(d).removeprefix("torch."): d for d in ALLOWED_DTYPES}
DTYPE_ORDER = sorted(DTYPE_NAMES)
DTYPE_CODES = {name: code for code, name in enumerate(DTYPE_ORDER)}
MAX_DIMS = 32
GENERIC_TAGS = ("__tuple__", "__dict__", "__namedtuple__", "__dtype__", "__device__", "__slice__")


class ProtocolError(Exception):
    """A message that breaks the framing or the codec rules (the sender is misbehaving)."""


class CodecError(ProtocolError):
    """A value that cannot be encoded, or a decoded payload that is not plain data."""


# --- framing -------------------------------------------------------------------------------


def _wait(fd: int, for_write: bool, deadline: float | None) -> None:
    if deadline is None:
        return
    remaining = max(0.0, deadline - time.monotonic())  # past the deadline: only take what is ready
    ready = select.select([], [fd], [], remaining) if for_write else select.select([fd], [], [], remaining)
    if not any(ready):
        raise TimeoutError("deadline passed")


def write_message(fd: int, payload: bytes, deadline: float | None = None) -> None:
    """Write one framed message. With a deadline the fd must be non-blocking."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(payload)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    view = memoryview(HEADER.pack(len(payload)) + payload)
    while view:
        _wait(fd, True, deadline)
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            continue
        view = view[written:]


def _read_exactly(fd: int, size: int, deadline: float | None) -> bytes:
    chunks, remaining = [], size
    while remaining:
        _wait(fd, False, deadline)
        try:
            chunk = os.read(fd, min(remaining, 1 << 20))
        except BlockingIOError:
            continue
        if not chunk:
            raise EOFError("the other side closed the pipe")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_message(fd: int, deadline: float | None = None, max_bytes: int = MAX_MESSAGE_BYTES) -> bytes:
    """Read one framed message; refuse oversized ones before reading their payload."""
    (size,) = HEADER.unpack(_read_exactly(fd, HEADER.size, deadline))
    if size > max_bytes:
        raise ProtocolError(f"announced message of {size} bytes exceeds the {max_bytes}-byte limit")
    return _read_exactly(fd, size, deadline)


# --- codec: Python value -> wire structure ---------------------------------------------------


def plain_tensor(t: torch.Tensor) -> torch.Tensor:
    """A detached, compact CPU copy of exactly type ``torch.Tensor`` (no subclass, no autograd)."""
    if t.layout != torch.strided or t.is_quantized or t.is_meta:
        raise CodecError(f"cannot send a {t.layout} / quantized / meta tensor")
    if t.dtype not in ALLOWED_DTYPES:
        raise CodecError(f"cannot send a tensor of dtype {t.dtype}")
    t = torch.Tensor.as_subclass(t.detach(), torch.Tensor)
    return t.cpu().clone()


def _is_namedtuple(obj) -> bool:
    return isinstance(obj, tuple) and isinstance(getattr(type(obj), "_fields", None), tuple)


def to_wire(obj, other=None, _depth: int = 0):
    """Turn ``obj`` into the tagged plain structure that goes through ``torch.save``.

    ``other(obj)`` is called for anything the generic codec does not know; it must return a
    wire structure (typically a tag) or raise ``CodecError``.
    """
    if _depth > MAX_DEPTH:
        raise CodecError(f"value nested deeper than {MAX_DEPTH} levels")
    d = _depth + 1
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        collector = getattr(_packing, "collector", None)
        return collector.add(plain_tensor(obj)) if collector is not None else plain_tensor(obj)
    if isinstance(obj, torch.dtype):
        name = str(obj).removeprefix("torch.")
        if name not in DTYPE_NAMES:
            raise CodecError(f"cannot send dtype {obj}")
        return {"__dtype__": name}
    if isinstance(obj, torch.device):
        return {"__device__": str(obj)}
    if isinstance(obj, torch.Size):
        return {"__tuple__": [int(x) for x in obj]}
    if _is_namedtuple(obj):
        return {"__namedtuple__": [type(obj).__name__, [str(f) for f in type(obj)._fields],
                                   [to_wire(x, other, d) for x in obj]]}
    if isinstance(obj, tuple):
        return {"__tuple__": [to_wire(x, other, d) for x in obj]}
    if isinstance(obj, list):
        return [to_wire(x, other, d) for x in obj]
    if isinstance(obj, dict):
        pairs = []
        for key, value in obj.items():
            if not (key is None or type(key) in (bool, int, float, str)):
                raise CodecError(f"dict keys must be str/int/float/bool/None, not {type(key).__name__}")
            pairs.append([key, to_wire(value, other, d)])
        return {"__dict__": pairs}
    if isinstance(obj, slice):
        return {"__slice__": [to_wire(obj.start, other, d), to_wire(obj.stop, other, d), to_wire(obj.step, other, d)]}
    if other is not None:
        return other(obj)
    raise CodecError(f"cannot send a {type(obj).__name__}")


class _TensorCollector:
    """Packs every tensor of a message into one flat buffer per dtype.

    The restricted unpickler is pure Python and costs microseconds per pickle opcode: a
    state dict of a small Transformer as ~90 separate tensors takes milliseconds to read. So
    the body refers to tensors by number, ``{"__tensor__": 7}``; their layouts travel as one
    int64 tensor ``meta`` (per tensor: dtype code, offset, ndim, shape..., stride...) and their
    data as one flat buffer per dtype — still only plain values and tensors inside
    ``torch.save`` — and the reader rebuilds each one with bounds checks and a copy.
    """

    def __init__(self):
        self.segments: dict[str, list[torch.Tensor]] = {}
        self.sizes: dict[str, int] = {}
        self.meta: list[int] = []
        self.count = 0

    def add(self, t: torch.Tensor) -> dict:
        name = str(t.dtype).removeprefix("torch.")
        offset = self.sizes.get(name, 0)
        # ``t`` is a fresh dense copy: its storage holds exactly its elements, in memory order.
        flat = t.as_strided((t.numel(),), (1,), t.storage_offset()) if t.numel() else t.reshape(0)
        self.segments.setdefault(name, []).append(flat)
        self.sizes[name] = offset + t.numel()
        self.meta += [DTYPE_CODES[name], offset, t.dim(), *t.shape, *t.stride()]
        self.count += 1
        return {"__tensor__": self.count - 1}

    def buffers(self) -> dict[str, torch.Tensor]:
        return {name: torch.cat(parts) if len(parts) > 1 else parts[0].clone() for name, parts in self.segments.items()}


_packing = threading.local()


def pack(obj, other=None) -> bytes:
    collector = _TensorCollector()
    _packing.collector = collector
    try:
        body = to_wire(obj, other)
    finally:
        _packing.collector = None
    buffer = io.BytesIO()
    # The non-zip format: a quarter less time per message for the small payloads of the
    # tests; torch.load(weights_only=True) reads it with the same restricted unpickler.
    message = {"body": body, "buffers": collector.buffers(), "meta": torch.tensor(collector.meta, dtype=torch.int64)}
    torch.save(message, buffer, _use_new_zipfile_serialization=False)
    return buffer.getvalue()


# --- codec: wire bytes -> Python value -------------------------------------------------------

_namedtuple_types: dict[tuple, type] = {}


def _namedtuple(name: str, fields: list[str]) -> type:
    if not (isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name)):
        raise CodecError(f"bad namedtuple name {name!r:.60}")
    if not all(isinstance(f, str) and f.isidentifier() and not keyword.iskeyword(f) and not f.startswith("_")
               for f in fields) or len(set(fields)) != len(fields):
        raise CodecError("bad namedtuple field names")
    key = (name, tuple(fields))
    if key not in _namedtuple_types:
        _namedtuple_types[key] = collections.namedtuple(name, fields)
    return _namedtuple_types[key]


class _Decoder:
    def __init__(self, tag_hook, buffers=None, layouts=()):
        self.tag_hook = tag_hook
        self.nodes = 0
        self.buffers = buffers or {}
        self.layouts = layouts
        # An honest message references each buffer element once; a budget of that many
        # elements stops a forged one from making the judge allocate more than it sent.
        self.budget = {name: b.numel() for name, b in self.buffers.items()}

    def packed_tensor(self, payload) -> torch.Tensor:
        if type(payload) is not int or not 0 <= payload < len(self.layouts):
            raise CodecError("tensor reference to an unknown tensor")
        name, offset, shape, stride = self.layouts[payload]
        if name not in self.buffers:
            raise CodecError("tensor reference to an unknown buffer")
        buffer = self.buffers[name]
        numel = math.prod(shape)
        if numel > self.budget[name]:
            raise CodecError("tensor references exceed the data sent")
        self.budget[name] -= numel
        if numel == 0:
            return torch.empty(shape, dtype=buffer.dtype)
        last = offset + sum((size - 1) * step for size, step in zip(shape, stride))
        if last >= buffer.numel():
            raise CodecError("tensor reference out of bounds")
        return buffer.as_strided(shape, stride, offset).clone()

    def tensor(self, t) -> torch.Tensor:
        if type(t) is torch.nn.Parameter:
            t = t.detach()
        if type(t) is not torch.Tensor:
            raise CodecError(f"unexpected tensor type {type(t).__name__}")
        if t.layout != torch.strided or t.is_quantized or t.is_meta or t.device.type != "cpu":
            raise CodecError("only dense CPU tensors may be sent")
        if t.dtype not in ALLOWED_DTYPES:
            raise CodecError(f"tensor dtype {t.dtype} is not allowed")
        copy = t.detach().clone()
        if type(copy) is not torch.Tensor:
            raise CodecError("tensor copy is not a plain torch.Tensor")
        return copy

    def value(self, obj, depth: int = 0):
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise CodecError(f"message has more than {MAX_NODES} values")
        if depth > MAX_DEPTH:
            raise CodecError(f"message nested deeper than {MAX_DEPTH} levels")
        kind = type(obj)
        if obj is None or kind in (bool, int, float, str):
            return obj
        if kind in (torch.Tensor, torch.nn.Parameter):
            return self.tensor(obj)
        if kind is list:
            return [self.value(x, depth + 1) for x in obj]
        if kind is dict:
            if len(obj) != 1:
                raise CodecError("an untagged dict on the wire")
            ((tag, payload),) = obj.items()
            if type(tag) is not str:
                raise CodecError("a dict tag must be a str")
            return self.tagged(tag, payload, depth + 1)
        raise CodecError(f"unexpected {kind.__name__} on the wire")

    def tagged(self, tag: str, payload, depth: int):
        if tag == "__tensor__":
            return self.packed_tensor(payload)
        if tag == "__tuple__":
            return tuple(self.value(_list(payload), depth))
        if tag == "__dict__":
            result = {}
            for pair in _list(payload):
                if type(pair) is not list or len(pair) != 2:
                    raise CodecError("a __dict__ entry must be a [key, value] pair")
                key, value = pair
                if not (key is None or type(key) in (bool, int, float, str)):
                    raise CodecError("dict keys must be plain")
                result[key] = self.value(value, depth)
            return result
        if tag == "__namedtuple__":
            name, fields, values = _list(payload, 3)
            values = self.value(_list(values), depth)
            if type(fields) is not list or len(fields) != len(values):
                raise CodecError("bad namedtuple payload")
            return _namedtuple(name, fields)(*values)
        if tag == "__dtype__":
            if type(payload) is not str or payload not in DTYPE_NAMES:
                raise CodecError(f"unknown dtype {payload!r:.40}")
            return DTYPE_NAMES[payload]
        if tag == "__device__":
            if type(payload) is not str or len(payload) > 32:
                raise CodecError("bad device")
            return torch.device(payload)
        if tag == "__slice__":
            start, stop, step = (self.value(x, depth) for x in _list(payload, 3))
            if not all(x is None or type(x) is int for x in (start, stop, step)):
                raise CodecError("slice bounds must be int or None")
            return slice(start, stop, step)
        if self.tag_hook is None:
            raise CodecError(f"unknown tag {tag!r:.40}")
        return self.tag_hook(tag, payload, lambda x: self.value(x, depth))


def _list(payload, length: int | None = None) -> list:
    if type(payload) is not list or (length is not None and len(payload) != length):
        raise CodecError("malformed tag payload")
    return payload


def unpack(data: bytes, tag_hook=None):
    """Decode bytes from the other side.

    ``tag_hook(tag, payload, decode)`` handles side-specific tags (``decode`` decodes nested
    payload values with the same rules); it must raise ``CodecError`` for unknown tags.
    """
    try:
        raw = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as error:  # the restricted unpickler refuses anything but plain data
        raise CodecError(f"payload refused by the restricted unpickler: {type(error).__name__}: {error}"[:500]) from None
    if type(raw) is not dict or set(raw) != {"body", "buffers", "meta"} or type(raw["buffers"]) is not dict:
        raise CodecError("a message must be {'body': ..., 'buffers': {...}, 'meta': tensor}")
    buffers = {}
    check = _Decoder(None)
    for name, buffer in raw["buffers"].items():
        if type(name) is not str or name not in DTYPE_NAMES:
            raise CodecError("bad buffer name")
        buffer = check.tensor(buffer)
        if buffer.dim() != 1 or buffer.dtype != DTYPE_NAMES[name]:
            raise CodecError("a buffer must be a 1-D tensor of its dtype")
        buffers[name] = buffer
    meta = check.tensor(raw["meta"])
    if meta.dtype != torch.int64 or meta.dim() != 1:
        raise CodecError("meta must be a 1-D int64 tensor")
    return _Decoder(tag_hook, buffers, _layouts(meta.tolist())).value(raw["body"])


def _layouts(meta: list[int]) -> list[tuple[str, int, list[int], list[int]]]:
    """Parse (dtype, offset, shape, stride) records; every number must be sane."""
    layouts, i = [], 0
    while i < len(meta):
        if i + 3 > len(meta):
            raise CodecError("truncated tensor layout")
        code, offset, ndim = meta[i:i + 3]
        if not (0 <= code < len(DTYPE_ORDER) and 0 <= offset < 2**62 and 0 <= ndim <= MAX_DIMS
                and i + 3 + 2 * ndim <= len(meta)):
            raise CodecError("malformed tensor layout")
        shape, stride = meta[i + 3:i + 3 + ndim], meta[i + 3 + ndim:i + 3 + 2 * ndim]
        if not all(0 <= x < 2**40 for x in shape + stride):
            raise CodecError("malformed tensor layout")
        layouts.append((DTYPE_ORDER[code], offset, shape, stride))
        i += 3 + 2 * ndim
    return layouts
