"""The wire format: plain data only, size caps, time limits."""
from __future__ import annotations

import io
import os
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
