"""The wire format: plain data only, size caps, time limits."""
from __future__ import annotations

import io
import json
import os
import re
import struct
import threading

import numpy as np
import pytest

from grader import protocol


def roundtrip(value):
    r, w = os.pipe()
    try:
        data = protocol.encode(value)
        threading.Thread(target=lambda: (os.write(w, data), os.close(w)), daemon=True).start()
        return protocol.read_message(r, timeout=5)
    finally:
        os.close(r)


def test_values_and_arrays_roundtrip():
    value = {"a": [1, 2.5, "x", None, True], "arr": np.arange(6, dtype=np.float32).reshape(2, 3),
             "nan": float("nan"), "inf": float("-inf")}
    back = roundtrip(value)
    assert back["a"] == [1, 2.5, "x", None, True]
    np.testing.assert_array_equal(back["arr"], value["arr"])
    assert back["arr"].dtype == np.float32
    assert np.isnan(back["nan"]) and back["inf"] == float("-inf")


def _frame(doc: bytes, arrays: list[bytes]) -> bytes:
    out = struct.pack(">Q", len(doc)) + doc + struct.pack(">I", len(arrays))
    for a in arrays:
        out += struct.pack(">Q", len(a)) + a
    return out


def _read_raw(data: bytes, **kwargs):
    r, w = os.pipe()
    threading.Thread(target=lambda: (os.write(w, data), os.close(w)), daemon=True).start()
    try:
        return protocol.read_message(r, timeout=5, **kwargs)
    finally:
        os.close(r)


def test_an_object_array_is_refused_without_unpickling():
    buf = io.BytesIO()
    np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(protocol.ProtocolError):
        _read_raw(_frame(b'{"__ndarray__": 0}', [buf.getvalue()]))


def test_a_bogus_tag_is_refused():
    with pytest.raises(protocol.ProtocolError):
        _read_raw(_frame(b'{"__ndarray__": 3}', []))


def test_oversized_messages_are_refused_before_reading_them():
    with pytest.raises(protocol.ProtocolError, match="limit"):
        _read_raw(struct.pack(">Q", 10**12), max_bytes=1 << 20)


def test_silence_times_out():
    r, w = os.pipe()
    try:
        with pytest.raises(protocol.ReplyTimeout):
            protocol.read_message(r, timeout=0.2)
    finally:
        os.close(r)
        os.close(w)


def test_a_closed_pipe_means_the_peer_is_gone():
    r, w = os.pipe()
    os.close(w)
    with pytest.raises(protocol.PeerClosed):
        protocol.read_message(r, timeout=1)
    os.close(r)


# Bounded decoding (issues 8 and 13): what decoding may build, not only the bytes read ---------------------------

SMALL = protocol.DecodeLimits(max_json_bytes=1 << 16, max_depth=8, max_values=1000, max_items=100,
                              max_string_chars=50, max_arrays=3)


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _npy_claiming(shape: tuple[int, ...], payload: bytes = b"\0" * 16) -> bytes:
    """A .npy whose header announces `shape` (float64) but which carries only `payload`."""
    header = f"{{'descr': '<f8', 'fortran_order': False, 'shape': {shape!r}, }}".encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


@pytest.mark.parametrize("doc,phrase", [
    (b'{"a":' * 9 + b"1" + b"}" * 9, "more than 8 levels deep"),
    (b"[" + b",".join([b"[]"] * 5000) + b"]", "more than 1,000 JSON values"),
    (b'{"v": [' + b",".join([b"1"] * 101) + b"]}", "a list in the reply has 101 items, more than the limit of 100"),
    (b"{" + b",".join(b'"k%d":1' % i for i in range(101)) + b"}", "a dict in the reply has 101 keys"),
    (b'{"s": "' + b"x" * 51 + b'"}', "a string in the reply is 51 characters long"),
    (b'{"' + b"k" * 51 + b'": 1}', "a key in the reply is 51 characters long"),
    (b'{"x": NaN}', "the JSON constant NaN is not allowed"),
    (b'{"x": ' + b"7" * 5000 + b"}", "invalid JSON"),  # past Python's int max-str-digits
    (b"x" * (1 << 17), "the reply's JSON part is 131,072 bytes, more than the limit of 65,536"),
])
def test_decoding_limits_are_sentences(doc, phrase):
    with pytest.raises(protocol.ProtocolError, match=re.escape(phrase)):
        _read_raw(_frame(doc, []), limits=SMALL)


def test_a_100000_deep_frame_is_refused_before_json_loads_recurses():
    doc = b'{"ok": true, "value": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(protocol.ProtocolError, match=re.escape("nests lists or dicts more than 64 levels deep, the limit")):
        _read_raw(_frame(doc, []))


def test_brackets_and_commas_inside_strings_do_not_count():
    tricky = {"s": "[[[[[[[[[[,,,,:::{{{{{{{{{" * 1, "t": ['"\\[', "]]]]]]]]]]]]]"]}
    doc = json.dumps(tricky).encode()
    assert _read_raw(_frame(doc, []), limits=SMALL) == tricky
    deep_enough = [[[[[[[1]]]]]]]  # 7 levels, within 8
    assert _read_raw(_frame(json.dumps(deep_enough).encode(), []), limits=SMALL) == deep_enough


def test_an_array_header_is_checked_before_its_data_is_allocated():
    # 10**12 float64 would be 8 TB: refused from the header, nothing allocated.
    with pytest.raises(protocol.ProtocolError, match=re.escape("needs 8,000,000,000,000 bytes; 16 were announced")):
        _read_raw(_frame(b'{"__ndarray__": 0}', [_npy_claiming((10**12,))]))
    with pytest.raises(protocol.ProtocolError, match="shape"):
        _read_raw(_frame(b'{"__ndarray__": 0}', [_npy_claiming((-1, 2))]))
    with pytest.raises(protocol.ProtocolError, match="4 arrays, more than the limit of 3"):
        _read_raw(_frame(b"[]", [_npy(np.zeros(1))] * 4), limits=SMALL)
    with pytest.raises(protocol.ProtocolError, match="dtype"):
        _read_raw(_frame(b'{"__ndarray__": 0}', [_npy(np.array(["text"]))]))


@pytest.mark.parametrize("arr", [np.arange(12.0).reshape(3, 4), np.asfortranarray(np.arange(12).reshape(3, 4)),
                                 np.array(3.5), np.zeros((0, 5), np.int8), np.array([True, False]),
                                 np.arange(6, dtype=">i4").reshape(2, 3)])
def test_arrays_come_back_equal_and_writable(arr):
    back = roundtrip({"a": arr})["a"]
    assert back.shape == arr.shape and back.dtype == arr.dtype
    np.testing.assert_array_equal(back, arr)
    assert back.flags.writeable


def test_a_maximal_reply_under_the_default_limits_decodes(tmp_path):
    """The limits refuse bombs, not ordinary large replies: a 400,000-item list and a 4 MB string pass."""
    value = {"items": list(range(400_000)), "text": "x" * (4 << 20)}
    back = roundtrip(value)
    assert back["items"] == value["items"] and back["text"] == value["text"]


@pytest.mark.parametrize("text", ['\\', '\\\\', '"', '\\"', '\\\\"[[[', ']]]}}}\\', '"[{,:}]"', 'é\u2028\x00', '\\u0022'])
def test_escapes_never_confuse_the_prescan(text):
    """Escaped quotes and backslashes next to brackets: the value comes back intact and within the limits."""
    value = {"s": [text, {text: text}], "n": [[1, [2]], text * 3]}
    assert _read_raw(_frame(json.dumps(value).encode(), []), limits=SMALL) == value
