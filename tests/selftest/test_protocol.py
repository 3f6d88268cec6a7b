"""The wire format between judge and worker (grader/sandbox/protocol.py), byte by byte.

Everything a worker sends is attacker-controlled: these tests forge messages by hand — lying
shapes, overlapping spans, huge counts, deep nesting, truncated frames — and check that each
is refused as a ``ProtocolError`` (or ``TimeoutError`` past the deadline) before anything big
is allocated, and that honest values (NaN and inf included, a state dict of a few MiB) cross
exactly. Fast: no worker is started here (test_sandbox.py does that).
"""

from __future__ import annotations

import collections
import io
import json
import math
import os
import pathlib
import random
import struct
import threading
import time

import pytest
import torch

from grader.sandbox import protocol

MiB = 1 << 20


def round_trip(value, limits=None):
    return protocol.unpack(protocol.pack(value, limits=limits), limits=limits)


def message(body, tensors=(), data=b"", header_extra=None) -> bytes:
    """A hand-made message: ``body`` JSON-encoded, ``tensors`` (dtype, shape, start, end)."""
    header = {"__metadata__": {"body": body if isinstance(body, str) else json.dumps(body)}}
    for number, (dtype, shape, start, end) in enumerate(tensors):
        header[str(number)] = {"dtype": dtype, "shape": shape, "data_offsets": [start, end]}
    header.update(header_extra or {})
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def ref(number) -> dict:
    return {"__tensor__": number}


# --- honest values -------------------------------------------------------------------------


def test_plain_values_round_trip_exactly_nan_and_inf_included():
    Pair = collections.namedtuple("Pair", ["missing_keys", "unexpected_keys"])
    rng = random.Random(0)
    floats = [rng.uniform(-1e300, 1e300) for _ in range(200)] + [5e-324, 2.0**-1074, 1 / 3, 0.1, -0.0]
    value = {
        "floats": floats,
        "special": (math.inf, -math.inf, math.nan),
        "ints": [0, -1, 2**63, -(2**100)],
        "text": ["", "注目度", 'a"b\\c\n', "\ud800 lone surrogate"],
        3: None,
        2.5: True,
        None: False,
        False: [torch.float64, torch.bfloat16, torch.device("cpu")],
        "slice": slice(1, None, -2),
        "size": torch.Size([2, 3]),
        "pair": Pair(["a"], []),
        "empty": ({}, [], ()),
    }
    back = round_trip(value)
    assert [struct.pack("<d", x) for x in back["floats"]] == [struct.pack("<d", x) for x in floats]  # bit for bit
    assert back["special"][:2] == (math.inf, -math.inf) and math.isnan(back["special"][2])
    assert back["ints"] == value["ints"] and back["text"] == value["text"]
    assert back[3] is None and back[2.5] is True and back[None] is False
    assert back[False] == [torch.float64, torch.bfloat16, torch.device("cpu")]
    assert back["slice"] == slice(1, None, -2) and back["size"] == (2, 3) and type(back["size"]) is tuple
    assert back["pair"].missing_keys == ["a"] and type(back["pair"]).__name__ == "Pair"
    assert back["empty"] == ({}, [], ())


def test_every_allowed_dtype_round_trips_as_a_plain_private_copy():
    class Marked(torch.Tensor):
        pass

    tensors = [
        torch.arange(24, dtype=torch.float32).view(2, 3, 4).transpose(0, 2)[1:],  # non-contiguous view
        torch.tensor(3.5, dtype=torch.float64),
        torch.empty(0, 3),
        torch.ones(2, 0, 5, dtype=torch.int16),
        torch.tensor([1 + 2j, -3j], dtype=torch.complex64).conj(),
        torch.nn.Parameter(torch.ones(3)),
        torch.zeros(2).as_subclass(Marked),
        torch.randn(4, requires_grad=True),
        torch.tensor([float("nan"), float("inf"), -0.0]),
    ]
    tensors += [torch.arange(-3, 4).to(dtype) for dtype in protocol.ALLOWED_DTYPES if dtype != torch.complex64]
    base = torch.arange(10.0)
    tensors += [base[:5], base[5:]]  # two views of one storage
    back = round_trip(tensors)
    for sent, got in zip(tensors, back):
        assert type(got) is torch.Tensor and not got.requires_grad and got.is_contiguous()
        assert got.dtype == sent.dtype and got.shape == sent.shape
        assert torch.equal(got, sent.detach().resolve_conj().as_subclass(torch.Tensor)) or got.isnan().any()
    storages = {t.untyped_storage().data_ptr() for t in back if t.numel()}
    assert len(storages) == sum(1 for t in back if t.numel()), "decoded tensors share storage"
    back[-2].fill_(7)
    assert back[-1][0] == 5  # no aliasing between what were views of one storage


def test_a_state_dict_crosses_within_the_job_limits_and_not_within_the_reply_limits():
    generator = torch.Generator().manual_seed(0)
    state = {
        f"layers.{i}.{name}": torch.randn(256, 256, generator=generator) for i in range(12) for name in ("w_q", "w_k")
    }  # 24 x 256 KiB = 6 MiB
    state["embed.weight"] = torch.randn(8000, 256, generator=generator)  # + 7.8 MiB
    back = round_trip({"state_dict": state, "losses": [[1, 2.5]]}, protocol.JOB_REPLIES)
    assert list(back["state_dict"]) == list(state)
    assert all(torch.equal(back["state_dict"][k], v) for k, v in state.items())
    assert protocol.JOB_REPLIES.tensor_bytes >= 64 * MiB
    small = protocol.Limits(message_bytes=16 * MiB, header_bytes=MiB, nodes=1000, tensors=100, tensor_bytes=8 * MiB)
    with pytest.raises(protocol.CodecError, match="exceeds the 8 MiB limit"):
        protocol.pack(state, limits=small)  # the worker's own check: a precise error instead of a refusal
    with pytest.raises(protocol.CodecError, match="exceed the 8 MiB limit"):
        protocol.unpack(protocol.pack(state), limits=small)


def test_messages_are_safetensors_files():
    safetensors_torch = pytest.importorskip("safetensors.torch")
    value = {"x": torch.arange(6.0).view(2, 3), "y": [torch.ones(2, dtype=torch.bool), torch.tensor(7)]}
    data = bytes(protocol.pack(value))
    loaded = safetensors_torch.load(data)
    assert sorted(loaded) == ["0", "1", "2"] and torch.equal(loaded["0"], value["x"])
    (size,) = struct.unpack("<Q", data[:8])
    assert "body" in json.loads(data[8 : 8 + size])["__metadata__"]
    # ... and a file written by safetensors itself is read (tensors in its own order).
    written = safetensors_torch.save(
        {"1": torch.ones(3, dtype=torch.int64), "0": torch.zeros(2, 2)}, metadata={"body": json.dumps([ref(0), ref(1)])}
    )
    zeros, ones = protocol.unpack(written)
    assert torch.equal(zeros, torch.zeros(2, 2)) and torch.equal(ones, torch.ones(3, dtype=torch.int64))


def test_what_cannot_be_sent_is_refused_on_the_way_out():
    with pytest.raises(protocol.CodecError):
        protocol.pack(lambda: 0)
    with pytest.raises(protocol.CodecError):
        protocol.pack({(1, 2): "tuple keys"})
    with pytest.raises(protocol.CodecError, match="dtype"):
        protocol.pack(torch.zeros(2, dtype=torch.complex128))
    with pytest.raises(protocol.CodecError, match="10 tensors"):
        protocol.pack([torch.zeros(1)] * 10, limits=protocol.Limits(1 * MiB, 1 * MiB, 1000, 9, 1 * MiB))


# --- forged messages -----------------------------------------------------------------------

F32_4 = ("F32", [4], 0, 16)  # a well-formed entry: 4 float32 over bytes 0..16


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "truncated"),
        (struct.pack("<Q", 100) + b"{}", "truncated"),
        (struct.pack("<Q", 2**63) + b"{}", "header of"),
        (struct.pack("<Q", 4) + b"[1] ", "JSON object"),
        (struct.pack("<Q", 3) + b"{\xff}", "not valid JSON"),
        (struct.pack("<Q", 5) + b"{1:2}", "not valid JSON"),
        (message([1], header_extra={"__metadata__": {"body": "[1]", "more": "x"}}), "__metadata__"),
        (message([1], header_extra={"__metadata__": {"body": 5}}), "__metadata__"),
        (
            message(
                "[1",
            ),
            "not valid JSON",
        ),
        (
            message(
                [ref(0)],
                [F32_4],
                bytes(16),
                header_extra={"7": {"dtype": "F32", "shape": [0], "data_offsets": [16, 16]}},
            ),
            'named "0", "1"',
        ),
        (
            message(
                [ref(0)],
                [("F32", [4], 0, 16)],
                bytes(16),
                header_extra={"0": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16], "x": 1}},
            ),
            "exactly dtype",
        ),
        (message([ref(0)], [("F8_E4M3", [16], 0, 16)], bytes(16)), "not allowed"),
        (message([ref(0)], [("C128", [1], 0, 16)], bytes(16)), "not allowed"),
        (message([ref(0)], [("F32", [-4], 0, 16)], bytes(16)), "shape"),
        (message([ref(0)], [("F32", [True, 4], 0, 16)], bytes(16)), "shape"),
        (message([ref(0)], [("U8", [1] * 33, 0, 1)], bytes(1)), "shape"),
        (message([ref(0)], [("F32", [3 << 28], 0, 1)], bytes(1)), "do not match"),  # 3 GiB claimed, 1 byte sent
        (message([ref(0)], [("F32", [2**62, 2**62], 0, 16)], bytes(16)), "do not match"),
        (message([ref(0)], [("F32", [3 << 28], 0, 3 << 30)], bytes(16)), "out of bounds"),
        (message([ref(0)], [("F32", [4], 8, 24)], bytes(24)), "overlaps or leaves gaps"),
        (message([ref(0)], [F32_4], bytes(20)), "overlaps or leaves gaps"),  # bytes nobody claims
        (message([ref(0), ref(1)], [F32_4, F32_4], bytes(16)), "overlaps or leaves gaps"),  # shared storage
        (message([ref(0), ref(1)], [F32_4, ("F32", [2], 8, 16)], bytes(16)), "overlaps or leaves gaps"),
        (message([ref(0), ref(0)], [F32_4], bytes(16)), "referenced twice"),
        (message([1], [F32_4], bytes(16)), "does not use"),
        (message([ref(1)], [F32_4], bytes(16)), "unknown tensor"),
        (message([ref("0")], [F32_4], bytes(16)), "unknown tensor"),
        (message([ref(0)], [("BOOL", [2], 0, 2)], b"\x01\x02"), "bool"),
        (message({"a": 1, "b": 2}), "untagged dict"),
        (message({"__handle__": [1, "x", "object", True]}), "unknown tag"),
        (message({"__dtype__": "object"}), "unknown dtype"),
        (message({"__device__": "warp-drive:0"}), "bad device"),
        (message({"__namedtuple__": ["Bad Name", ["x"], [1]]}), "namedtuple"),
        (message({"__slice__": [1.5, None, None]}), "slice"),
    ],
    ids=lambda x: x if isinstance(x, str) else None,
)
def test_forged_messages_are_refused(data, reason):
    with pytest.raises(protocol.CodecError, match=reason):
        protocol.unpack(data, limits=protocol.REPLIES)


def test_huge_counts_are_refused_before_the_header_is_parsed():
    limits = protocol.REPLIES
    many = {str(n): {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for n in range(limits.tensors + 1)}
    with pytest.raises(protocol.CodecError, match=f"more than the limit of {limits.tensors}"):
        protocol.unpack(message([ref(0)], header_extra=many), limits=limits)
    values = "[" + "0," * limits.nodes + "0]"  # ~400 KB, well under the header limit
    with pytest.raises(protocol.CodecError, match="values, more than the limit"):
        protocol.unpack(message(values), limits=limits)
    with pytest.raises(protocol.CodecError, match="exceeds the 2 MiB limit"):
        protocol.unpack(message(json.dumps(["x" * 100] * 30000)), limits=limits)
    small = protocol.Limits(message_bytes=4 * MiB, header_bytes=MiB, nodes=1000, tensors=100, tensor_bytes=2 * MiB)
    with pytest.raises(protocol.CodecError, match="of tensor data exceed"):
        protocol.unpack(message([ref(0)], [("U8", [3 * MiB], 0, 3 * MiB)], bytes(3 * MiB)), limits=small)
    with pytest.raises(protocol.CodecError, match="exceeds the 4 MiB limit"):
        protocol.unpack(bytes(5 * MiB), limits=small)


@pytest.mark.parametrize(
    "depth, reason",
    [
        (protocol.MAX_DEPTH + 2, "nested deeper than"),
        (100_000, "nested too deeply"),
    ],
)
def test_deep_nesting_is_refused(depth, reason):
    with pytest.raises(protocol.CodecError, match=reason):
        protocol.unpack(message("[" * depth + "]" * depth), limits=protocol.REPLIES)
    assert round_trip([[[[1]]]]) == [[[[1]]]]


def test_whatever_decoding_raises_becomes_a_protocol_error():
    def hook(tag, payload, decode):
        raise {"oom": MemoryError, "key": KeyError, "deep": RecursionError}[payload]()

    for payload, reason in [("oom", "more memory"), ("key", "KeyError"), ("deep", "nested too deeply")]:
        with pytest.raises(protocol.CodecError, match=reason):
            protocol.unpack(message({"__handle__": payload}), hook, limits=protocol.REPLIES)


def test_decoding_past_the_deadline_is_a_time_out():
    data = protocol.pack([torch.zeros(10)] * 3 + [0] * 10_000)
    with pytest.raises(TimeoutError):
        protocol.unpack(data, limits=protocol.REPLIES, deadline=time.monotonic() - 1)
    assert len(protocol.unpack(data, limits=protocol.REPLIES, deadline=time.monotonic() + 60)) == 10_003


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_a_pickle_is_refused_never_loaded(tmp_path, zip_format):
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"body": [_Evil(str(marker))]}, buffer, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(protocol.CodecError):
        protocol.unpack(buffer.getvalue(), limits=protocol.REPLIES)
    assert not marker.exists()


# --- framing -------------------------------------------------------------------------------


@pytest.fixture
def pipe():
    read, write = os.pipe()
    yield read, write
    for fd in (read, write):
        try:
            os.close(fd)
        except OSError:
            pass


def test_framing_refuses_oversized_messages_before_reading_them(pipe):
    read, write = pipe
    os.write(write, struct.pack(">Q", 2**40))
    with pytest.raises(protocol.ProtocolError, match="exceeds"):
        protocol.read_message(read)
    os.write(write, struct.pack(">Q", protocol.JOB_REPLIES.message_bytes + 1))
    with pytest.raises(protocol.ProtocolError, match="exceeds"):
        protocol.read_value(read, None, protocol.JOB_REPLIES)
    protocol.write_message(write, b"hello")
    assert protocol.read_message(read) == b"hello"


def test_truncated_frames_end_in_eof_or_a_time_out(pipe):
    read, write = pipe
    os.set_blocking(read, False)
    os.write(write, struct.pack(">Q", 100) + b"only ten b")
    with pytest.raises(TimeoutError):
        protocol.read_message(read, deadline=time.monotonic() + 0.2)
    os.write(write, b"\0\0\0")  # then part of a length, and the writer goes away
    os.close(write)
    with pytest.raises(EOFError):
        protocol.read_value(read, time.monotonic() + 5, protocol.REPLIES)


def test_replies_are_checked_as_they_are_read(pipe):
    """``read_value`` (the judge's reader) refuses a lying header before reading the data it
    claims: here the data never comes, so any read of it would hang until the deadline."""
    read, write = pipe
    os.set_blocking(read, False)
    forged = message([ref(0)], [("F32", [3 << 28], 0, 3 << 30)])  # 3 GiB claimed, none of it sent
    os.write(write, struct.pack(">Q", len(forged) + 1000) + forged)
    started = time.monotonic()
    with pytest.raises(protocol.CodecError, match="do not match|out of bounds"):
        protocol.read_value(read, time.monotonic() + 10, protocol.REPLIES)
    assert time.monotonic() - started < 5


def test_a_large_message_crosses_a_pipe(pipe):
    read, write = pipe
    os.set_blocking(read, False)
    state = {"w": torch.randn(1000, 1000), "b": torch.randn(1000, dtype=torch.float64), "n": 3}
    data = protocol.pack(state)  # bigger than a pipe's buffer
    writer = threading.Thread(target=protocol.write_message, args=(write, data))
    writer.start()
    back = protocol.read_value(read, time.monotonic() + 30, protocol.REPLIES)
    writer.join()
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in ("w", "b"))
