"""The wire between the judge and the sandboxed worker: framing and a data-only codec.

Both sides import this file; the worker runs a *copy* of it, so it imports nothing from the
rest of the grader (only the standard library and torch).

Threat model. The worker runs student code, so every byte it sends back is attacker-controlled.
Reading such bytes must never execute code, exhaust the judge's memory or time, or produce
objects whose methods the student wrote. Hence:

* **Framing.** Messages travel on dedicated pipes (never stdout: student ``print``s land there)
  as an 8-byte big-endian length followed by the payload. A length above the reader's limit
  (``Limits.message_bytes``; replies have a much smaller one than requests) is refused before
  a single payload byte is read. The judge's reads and writes take a deadline, so a worker
  that stops talking cannot hang the judge.

* **Codec: safetensors, no pickle.** A payload is a safetensors file (8-byte little-endian
  header length, a JSON header, then the raw bytes of the tensors)::

      {"__metadata__": {"body": "<the message as JSON>"},
       "0": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, "1": ...}

  The body is plain JSON (``NaN``/``Infinity`` allowed; floats round-trip exactly) in which a
  tensor is ``{"__tensor__": 0}``: a reference to the tensor named ``"0"``. No pickle, no
  views, no storage shared between tensors: each tensor is its own span of bytes, referenced
  exactly once, copied into a fresh tensor of exactly type ``torch.Tensor``.

* **Checked before anything big is allocated** (``Limits``, with a smaller set for replies):
  the header's length; a scan of the header bytes that bounds how many JSON values it can
  hold (``nodes``) before ``json.loads`` runs; the tensor count; every tensor's dtype (one of
  ``ALLOWED_DTYPES``), shape, ``shape x itemsize == byte span``; the spans contiguous, non
  overlapping, in bounds and covering the data exactly; the total tensor bytes; the nesting
  depth. So the judge never holds more than the bytes it was sent plus one copy of the
  tensors in them, whatever the header claims. Decoding checks the call's deadline
  (``TimeoutError``), and anything that goes wrong while decoding (``MemoryError``,
  ``RecursionError``, ...) becomes a ``ProtocolError``.

* **Tags.** Every dict in the body is a tag with exactly one key (``{"__tuple__": [...]}``,
  ``{"__dict__": [[key, value], ...]}``, ``{"__handle__": [...]}``, ...), so a plain dict can
  never be mistaken for a tag. Tags understood here (both directions): ``__tensor__``,
  ``__tuple__``, ``__dict__``, ``__namedtuple__``, ``__dtype__``, ``__device__``,
  ``__slice__``. The two ends add their own through hooks: the worker sends
  ``__handle__``/``__method__`` (references to objects that stay in the worker), the judge
  sends ``__handle__``/``__method__`` back and ``__trusted__`` (a trusted module to re-create
  in the worker).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import keyword
import math
import os
import select
import struct
import sys
import threading
import time

import torch

MAX_MESSAGE_BYTES = 258 * 1024 * 1024  # the largest message either side may announce
MAX_DEPTH = 64  # nesting depth of containers in a message body
MAX_DIMS = 32
HEADER = struct.Struct(">Q")  # framing: payload length
ST_HEADER = struct.Struct("<Q")  # safetensors: JSON header length
MiB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one message may hold; everything is checked before it is allocated."""

    message_bytes: int  # the framed payload (JSON header + tensor bytes)
    header_bytes: int  # the safetensors JSON header, which holds the body
    nodes: int  # JSON values in the header (an upper bound found by scanning its bytes)
    tensors: int  # tensors in the message
    tensor_bytes: int  # their bytes together
    depth: int = MAX_DEPTH


# Requests carry the judge's data to the worker (the translation job's training pairs).
REQUESTS = Limits(
    message_bytes=MAX_MESSAGE_BYTES,
    header_bytes=128 * MiB,
    nodes=4_000_000,
    tensors=100_000,
    tensor_bytes=MAX_MESSAGE_BYTES,
)
# Replies to the tests' calls: mostly small, but a test may read the state dict of the paper's
# Transformer (44 M float32 parameters, 176 MiB); the header (body) stays small.
REPLIES = Limits(
    message_bytes=MAX_MESSAGE_BYTES, header_bytes=2 * MiB, nodes=200_000, tensors=10_000, tensor_bytes=256 * MiB
)
# The reply of a trusted job (the translation job: hypotheses, curves and a state dict).
JOB_REPLIES = Limits(
    message_bytes=80 * MiB, header_bytes=8 * MiB, nodes=1_000_000, tensors=10_000, tensor_bytes=72 * MiB
)


def reply_limits(op: str | None) -> Limits:
    """The limits of the worker's reply to a request ``op`` (both sides use this)."""
    return JOB_REPLIES if op == "trusted" else REPLIES


# safetensors' dtype names; every one is a plain little-endian scalar type.
ST_DTYPES = {
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
    "C64": torch.complex64,
    "U8": torch.uint8,
    "I8": torch.int8,
    "I16": torch.int16,
    "I32": torch.int32,
    "I64": torch.int64,
    "BOOL": torch.bool,
}
ST_NAMES = {dtype: name for name, dtype in ST_DTYPES.items()}
ALLOWED_DTYPES = set(ST_DTYPES.values())
DTYPE_NAMES = {str(d).removeprefix("torch."): d for d in ALLOWED_DTYPES}
ITEMSIZE = {name: torch.empty(0, dtype=dtype).element_size() for name, dtype in ST_DTYPES.items()}
GENERIC_TAGS = ("__tuple__", "__dict__", "__namedtuple__", "__dtype__", "__device__", "__slice__")

if sys.byteorder != "little":  # safetensors stores little-endian bytes; tensors are copied raw
    raise ImportError("the sandbox protocol needs a little-endian machine")


class ProtocolError(Exception):
    """A message that breaks the framing or the codec rules (the sender is misbehaving)."""


class CodecError(ProtocolError):
    """A value that cannot be encoded, or a decoded payload that is not plain data."""


def _mib(size: int) -> str:
    return f"{size / MiB:.3g} MiB" if size >= MiB else f"{size} bytes"


# --- framing -------------------------------------------------------------------------------


def _wait(fd: int, for_write: bool, deadline: float | None) -> None:
    if deadline is None:
        return
    remaining = max(0.0, deadline - time.monotonic())  # past the deadline: only take what is ready
    ready = select.select([], [fd], [], remaining) if for_write else select.select([fd], [], [], remaining)
    if not any(ready):
        raise TimeoutError("deadline passed")


def write_message(fd: int, payload, deadline: float | None = None) -> None:
    """Write one framed message (bytes-like). With a deadline the fd must be non-blocking."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(payload)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    for part in (HEADER.pack(len(payload)), payload):
        view = memoryview(part).cast("B")
        while view:
            _wait(fd, True, deadline)
            try:
                written = os.write(fd, view)
            except BlockingIOError:
                continue
            view = view[written:]


def _read_into(fd: int, view: memoryview, deadline: float | None) -> None:
    while view:
        _wait(fd, False, deadline)
        try:
            got = os.readv(fd, [view])
        except BlockingIOError:
            continue
        if not got:
            raise EOFError("the other side closed the pipe")
        view = view[got:]


def read_message(fd: int, deadline: float | None = None, max_bytes: int = MAX_MESSAGE_BYTES) -> bytearray:
    """Read one framed message; refuse oversized ones before reading their payload.

    The payload lands in one buffer of the announced size (no chunks joined: one copy).
    """
    header = bytearray(HEADER.size)
    _read_into(fd, memoryview(header), deadline)
    (size,) = HEADER.unpack(header)
    if size > max_bytes:
        raise ProtocolError(f"announced message of {size} bytes exceeds the {max_bytes}-byte limit")
    payload = bytearray(size)
    _read_into(fd, memoryview(payload), deadline)
    return payload


# --- codec: Python value -> wire structure ---------------------------------------------------


def plain_tensor(t: torch.Tensor) -> torch.Tensor:
    """A detached, dense CPU copy of exactly type ``torch.Tensor`` (no subclass, no autograd)."""
    if t.layout != torch.strided or t.is_quantized or t.is_meta:
        raise CodecError(f"cannot send a {t.layout} / quantized / meta tensor")
    if t.dtype not in ALLOWED_DTYPES:
        raise CodecError(f"cannot send a tensor of dtype {t.dtype}")
    t = torch.Tensor.as_subclass(t.detach(), torch.Tensor)
    return t.cpu().resolve_conj().resolve_neg().clone(memory_format=torch.contiguous_format)


def _is_namedtuple(obj) -> bool:
    return isinstance(obj, tuple) and isinstance(getattr(type(obj), "_fields", None), tuple)


def to_wire(obj, other=None, _depth: int = 0):
    """Turn ``obj`` into the tagged plain structure of a message body.

    ``other(obj)`` is called for anything the generic codec does not know; it must return a
    wire structure (typically a tag) or raise ``CodecError``. Inside ``pack`` (hooks included)
    tensors become ``{"__tensor__": n}``; a bare ``to_wire`` returns plain tensor copies.
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
        return {
            "__namedtuple__": [
                type(obj).__name__,
                [str(f) for f in type(obj)._fields],
                [to_wire(x, other, d) for x in obj],
            ]
        }
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
    """The tensors of one message, in order: the body refers to them as ``{"__tensor__": n}``."""

    def __init__(self):
        self.tensors: list[torch.Tensor] = []

    def add(self, t: torch.Tensor) -> dict:
        self.tensors.append(t)
        return {"__tensor__": len(self.tensors) - 1}


_packing = threading.local()


def pack(obj, other=None, limits: Limits | None = None) -> bytearray:
    """Encode ``obj`` as a safetensors message; with ``limits``, refuse one the reader would refuse."""
    collector = _TensorCollector()
    _packing.collector = collector
    try:
        body = to_wire(obj, other)  # hooks that call to_wire add their tensors to the same collector
    finally:
        _packing.collector = None
    try:
        text = json.dumps(body, allow_nan=True, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise CodecError(f"cannot encode the message: {error}") from None
    entries, offset = {"__metadata__": {"body": text}}, 0
    for number, t in enumerate(collector.tensors):
        size = t.numel() * t.element_size()
        entries[str(number)] = {
            "dtype": ST_NAMES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    header = json.dumps(entries, allow_nan=True, separators=(",", ":")).encode("utf-8")
    header += b" " * (-len(header) % 8)  # data 8-byte aligned, as safetensors writes it
    if limits is not None:
        total = ST_HEADER.size + len(header) + offset
        for what, size, limit in (
            ("message", total, limits.message_bytes),
            ("header", len(header), limits.header_bytes),
            ("tensor data", offset, limits.tensor_bytes),
        ):
            if size > limit:
                raise CodecError(f"the {what} to send ({_mib(size)}) exceeds the {_mib(limit)} limit")
        if len(collector.tensors) > limits.tensors:
            raise CodecError(f"{len(collector.tensors)} tensors to send exceed the limit of {limits.tensors}")
    out = bytearray(ST_HEADER.size + len(header) + offset)
    out[: ST_HEADER.size] = ST_HEADER.pack(len(header))
    out[ST_HEADER.size : ST_HEADER.size + len(header)] = header
    if offset:
        data = torch.frombuffer(out, dtype=torch.uint8, offset=ST_HEADER.size + len(header), count=offset)
        position = 0
        for t in collector.tensors:
            size = t.numel() * t.element_size()
            if size:
                data[position : position + size].copy_(t.reshape(-1).view(torch.uint8))
            position += size
    return out


# --- codec: wire bytes -> Python value -------------------------------------------------------

_namedtuple_types: dict[tuple, type] = {}


def _namedtuple(name: str, fields: list[str]) -> type:
    if not (isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name)):
        raise CodecError(f"bad namedtuple name {name!r:.60}")
    if not all(
        isinstance(f, str) and f.isidentifier() and not keyword.iskeyword(f) and not f.startswith("_") for f in fields
    ) or len(set(fields)) != len(fields):
        raise CodecError("bad namedtuple field names")
    key = (name, tuple(fields))
    if key not in _namedtuple_types:
        _namedtuple_types[key] = collections.namedtuple(name, fields)
    return _namedtuple_types[key]


class _Decoder:
    def __init__(self, tag_hook, limits: Limits, deadline: float | None, tensors=()):
        self.tag_hook = tag_hook
        self.limits = limits
        self.deadline = deadline
        self.nodes = 0
        self.tensors = list(tensors)  # read and checked already; each may be referenced once
        self.used = [False] * len(self.tensors)

    def check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TimeoutError("deadline passed while decoding a message")

    def packed_tensor(self, payload) -> torch.Tensor:
        if type(payload) is not int or not 0 <= payload < len(self.tensors):
            raise CodecError("a reference to an unknown tensor")
        if self.used[payload]:
            raise CodecError("a tensor referenced twice (tensors may not share storage)")
        self.used[payload] = True
        return self.tensors[payload]

    def value(self, obj, depth: int = 0):
        self.nodes += 1
        if self.nodes > self.limits.nodes:
            raise CodecError(f"message has more than {self.limits.nodes} values")
        if not self.nodes & 0xFFF:
            self.check_deadline()
        if depth > self.limits.depth:
            raise CodecError(f"message nested deeper than {self.limits.depth} levels")
        kind = type(obj)
        if obj is None or kind in (bool, int, float, str):
            return obj
        if kind is list:
            return [self.value(x, depth + 1) for x in obj]
        if kind is dict:
            if len(obj) != 1:
                raise CodecError("an untagged dict on the wire")
            ((tag, payload),) = obj.items()
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
            try:
                return torch.device(payload)
            except RuntimeError:
                raise CodecError(f"bad device {payload!r:.40}") from None
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


def _json(text, what: str):
    try:
        return json.loads(text)
    except RecursionError:
        raise CodecError(f"the {what} is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise CodecError(f"the {what} is not valid JSON: {error}"[:300]) from None


def _tensor_spans(header: dict, data_size: int, limits: Limits) -> list[tuple[str, list[int], int, int]]:
    """Check the header's tensor table; return (dtype, shape, start, end) per tensor, in order."""
    count = len(header) - 1
    if count > limits.tensors:
        raise CodecError(f"the message holds {count} tensors, more than the limit of {limits.tensors}")
    if set(header) != {"__metadata__", *(str(n) for n in range(count))}:
        raise CodecError('tensors must be named "0", "1", ... in a message')
    spans = []
    for number in range(count):
        info = header[str(number)]
        if type(info) is not dict or set(info) != {"dtype", "shape", "data_offsets"}:
            raise CodecError("a tensor entry must hold exactly dtype, shape and data_offsets")
        name, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if type(name) is not str or name not in ST_DTYPES:
            raise CodecError(f"tensor dtype {name!r:.20} is not allowed")
        if type(shape) is not list or len(shape) > MAX_DIMS or not all(type(x) is int and x >= 0 for x in shape):
            raise CodecError("a tensor shape must be a list of at most 32 non-negative ints")
        if type(offsets) is not list or len(offsets) != 2 or not all(type(x) is int for x in offsets):
            raise CodecError("data_offsets must be two ints")
        start, end = offsets
        if not 0 <= start <= end <= data_size:
            raise CodecError("tensor data out of bounds")
        if math.prod(shape) * ITEMSIZE[name] != end - start:
            raise CodecError(f"tensor {number}: its shape and dtype do not match its {end - start} bytes")
        spans.append((name, shape, start, end))
    position = 0
    for _name, _shape, start, end in sorted(spans, key=lambda s: (s[2], s[3])):
        if start != position:
            raise CodecError("tensor data overlaps or leaves gaps")
        position = end
    if position != data_size:
        raise CodecError("tensor data overlaps or leaves gaps")
    return spans


def _tensor(data: bytearray | None, name: str, shape: list[int]) -> torch.Tensor:
    """A tensor that owns ``data`` (its exact bytes, read for it alone): no copy, no sharing."""
    dtype = ST_DTYPES[name]
    if not data:
        return torch.empty(shape, dtype=dtype)
    tensor = torch.frombuffer(data, dtype=torch.uint8)
    if dtype is torch.bool and bool((tensor > 1).any()):
        raise CodecError("a bool tensor holds bytes other than 0 and 1")
    tensor = torch.frombuffer(data, dtype=dtype).reshape(shape)
    if type(tensor) is not torch.Tensor:
        raise CodecError("tensor copy is not a plain torch.Tensor")
    return tensor


def _decode(read, total: int, tag_hook, limits: Limits, deadline: float | None):
    """Decode a message of ``total`` bytes that ``read(n)`` hands over in order (n bytes each
    time, as a fresh bytearray). Each step is checked before the next one is read."""
    if total > limits.message_bytes:
        raise CodecError(f"a message of {_mib(total)} exceeds the {_mib(limits.message_bytes)} limit")
    if total < ST_HEADER.size:
        raise CodecError("a truncated message")
    (header_size,) = ST_HEADER.unpack(read(ST_HEADER.size))
    if header_size > limits.header_bytes:
        raise CodecError(f"a message header of {_mib(header_size)} exceeds the {_mib(limits.header_bytes)} limit")
    data_size = total - ST_HEADER.size - header_size
    if data_size < 0:
        raise CodecError("a truncated message (the header runs past its end)")
    if data_size > limits.tensor_bytes:
        raise CodecError(f"{_mib(data_size)} of tensor data exceed the {_mib(limits.tensor_bytes)} limit")
    raw_header = bytes(read(header_size))
    if not raw_header.startswith(b"{"):
        raise CodecError("a message header must be a JSON object")
    # Every JSON value but the outermost follows a "[", "{", "," or ":" (strings may hold these
    # too, so this over-counts): a bound on what json.loads will build, known before it runs.
    values = 1 + sum(raw_header.count(c) for c in (b"[", b"{", b",", b":"))
    if values > limits.nodes:
        raise CodecError(f"the message header may hold {values} values, more than the limit of {limits.nodes}")
    header = _json(raw_header, "message header")
    del raw_header
    if type(header) is not dict:
        raise CodecError("a message header must be a JSON object")
    metadata = header.get("__metadata__")
    if type(metadata) is not dict or set(metadata) != {"body"} or type(metadata["body"]) is not str:
        raise CodecError('a message must carry its body as __metadata__ {"body": "..."}')
    spans = _tensor_spans(header, data_size, limits)
    decoder = _Decoder(tag_hook, limits, deadline)
    decoder.check_deadline()
    tensors: list = [None] * len(spans)
    for number in sorted(range(len(spans)), key=lambda n: spans[n][2]):  # the data in order
        name, shape, start, end = spans[number]
        tensors[number] = _tensor(read(end - start) if end > start else None, name, shape)
        decoder.check_deadline()
    decoder = _Decoder(tag_hook, limits, deadline, tensors)
    del tensors
    body = _json(metadata.pop("body"), "message body")
    decoder.check_deadline()
    value = decoder.value(body)
    if not all(decoder.used):
        raise CodecError("a message holds a tensor its body does not use")
    decoder.check_deadline()
    return value


def _guarded(decode):
    """Run ``decode()``: a time-out stays a ``TimeoutError``, EOF an ``EOFError``; anything else
    that goes wrong becomes a ``ProtocolError`` (the sender is at fault, never the reader)."""
    try:
        return decode()
    except (ProtocolError, TimeoutError, EOFError):
        raise
    except RecursionError:
        raise CodecError("the message is nested too deeply") from None
    except MemoryError:
        raise CodecError("the message needs more memory than the grader has") from None
    except Exception as error:
        raise CodecError(f"the message could not be decoded: {type(error).__name__}: {error}"[:300]) from None


def unpack(data, tag_hook=None, limits: Limits | None = None, deadline: float | None = None):
    """Decode a message from the other side (``bytes`` or ``bytearray``).

    ``tag_hook(tag, payload, decode)`` handles side-specific tags (``decode`` decodes nested
    payload values with the same rules); it must raise ``CodecError`` for unknown tags.
    ``limits`` defaults to ``REQUESTS`` (what the worker reads); the judge passes its reply
    limits. Past ``deadline`` (``time.monotonic()``), decoding stops with ``TimeoutError``;
    every other failure is a ``ProtocolError``.
    """
    view = memoryview(data).cast("B")
    position = 0

    def read(size: int) -> bytearray:
        nonlocal position
        if position + size > len(view):
            raise CodecError("a truncated message")
        position += size
        return bytearray(view[position - size : position])

    return _guarded(lambda: _decode(read, len(view), tag_hook, limits or REQUESTS, deadline))


def read_value(fd: int, deadline: float | None, limits: Limits, tag_hook=None):
    """Read one framed message and decode it as it arrives (``unpack``'s rules and errors).

    The judge's way to read a reply: nothing bigger than the header is read before the header
    is checked, and each tensor's bytes are read straight into the buffer the tensor then owns,
    so a reply costs the judge its tensors once, never the message twice.
    """

    def read(size: int) -> bytearray:
        buffer = bytearray(size)
        _read_into(fd, memoryview(buffer), deadline)
        return buffer

    header = read(HEADER.size)
    (size,) = HEADER.unpack(header)
    if size > limits.message_bytes:
        raise ProtocolError(f"announced message of {size} bytes exceeds the {limits.message_bytes}-byte limit")
    return _guarded(lambda: _decode(read, size, tag_hook, limits, deadline))
