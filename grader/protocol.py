"""Wire format between the grader and the sandbox child: JSON plus raw .npy arrays.

No pickle crosses the boundary. A message is a JSON document in which every
numpy array is replaced by ``{"__ndarray__": k}``; the arrays follow as .npy
bytes and are read back with ``allow_pickle=False``. On arrival the decoder
accepts only JSON scalars, strings, lists, string-keyed dicts and numeric or
boolean arrays: anything else is a protocol violation, reported as such.

Frame: 8-byte big-endian JSON length, JSON, 4-byte array count, then for each
array an 8-byte length and its .npy bytes.
"""
from __future__ import annotations

import io
import json
import math
import os
import select
import struct
import time
from typing import Any

import numpy as np

# Bound once at import: in the child, student code may later monkeypatch the
# json/numpy/os modules, and the wire format must not change with it.
_dumps, _loads, _np_save, _np_load = json.dumps, json.loads, np.save, np.load
_np_require = np.require  # not ascontiguousarray: that one turns 0-d arrays into shape (1,)
_os_read, _os_write, _select = os.read, os.write, select.select

ARRAY_TAG = "__ndarray__"
ALLOWED_DTYPE_KINDS = "biuf"  # bool, signed, unsigned, float: never object, str or void


# A request argument {GENERATOR_TAG: seed} reaches the student as a fresh torch.Generator with that seed.
GENERATOR_TAG = "__torch_generator_seed__"


def generator_arg(seed: int) -> dict[str, int]:
    """The request argument that the child turns into ``torch.Generator().manual_seed(seed)``."""
    return {GENERATOR_TAG: int(seed)}


class ProtocolError(Exception):
    """The other side sent something that is not a well-formed message."""


class ReplyTimeout(Exception):
    """No complete reply arrived within the time limit."""


class PeerClosed(Exception):
    """The other side closed its end: for the parent, the child has died."""


def encode(value: Any) -> bytes:
    arrays: list[np.ndarray] = []

    def tag(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            arrays.append(v)
            return {ARRAY_TAG: len(arrays) - 1}
        if isinstance(v, dict):
            return {str(k): tag(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [tag(x) for x in v]
        if isinstance(v, float) and not math.isfinite(v):
            # JSON has no NaN/inf; keep them representable without extensions.
            return {"__float__": repr(v)}
        return v

    doc = _dumps(tag(value), allow_nan=False).encode()
    parts = [struct.pack(">Q", len(doc)), doc, struct.pack(">I", len(arrays))]
    for arr in arrays:
        buf = io.BytesIO()
        _np_save(buf, _np_require(arr, requirements="C"), allow_pickle=False)
        data = buf.getvalue()
        parts += [struct.pack(">Q", len(data)), data]
    return b"".join(parts)


def _untag(v: Any, arrays: list[np.ndarray]) -> Any:
    if isinstance(v, dict):
        if set(v) == {ARRAY_TAG}:
            k = v[ARRAY_TAG]
            if type(k) is not int or not 0 <= k < len(arrays):
                raise ProtocolError("array reference out of range")
            return arrays[k]
        if set(v) == {"__float__"}:
            if v["__float__"] not in ("nan", "inf", "-inf"):
                raise ProtocolError("bad float tag")
            return float(v["__float__"])
        return {k: _untag(x, arrays) for k, x in v.items()}
    if isinstance(v, list):
        return [_untag(x, arrays) for x in v]
    if v is None or type(v) in (bool, int, float, str):
        return v
    raise ProtocolError(f"unexpected JSON value of type {type(v).__name__}")


def _load_array(data: bytes) -> np.ndarray:
    try:
        arr = _np_load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError for pickled/object arrays, others for junk
        raise ProtocolError(f"invalid array payload: {exc}") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in ALLOWED_DTYPE_KINDS:
        raise ProtocolError(f"array of dtype {getattr(arr, 'dtype', '?')} is not allowed")
    return arr


class _Reader:
    """Reads exact byte counts from a pipe fd, honouring an overall deadline and size cap."""

    def __init__(self, fd: int, deadline: float | None, max_bytes: int) -> None:
        self.fd, self.deadline, self.budget, self.limit = fd, deadline, max_bytes, max_bytes

    def read(self, n: int) -> bytes:
        if n > self.budget:
            raise ProtocolError(f"message larger than the {self.limit >> 20} MB limit")
        self.budget -= n
        chunks: list[bytes] = []
        while n:
            if self.deadline is not None:
                left = self.deadline - time.monotonic()
                if left <= 0:
                    raise ReplyTimeout()
                ready, _, _ = _select([self.fd], [], [], left)
                if not ready:
                    raise ReplyTimeout()
            chunk = _os_read(self.fd, min(n, 1 << 20))
            if not chunk:
                raise PeerClosed()
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)


def read_message(fd: int, *, timeout: float | None = None, max_bytes: int = 512 << 20) -> Any:
    """Read and decode one message; raises ReplyTimeout, PeerClosed or ProtocolError."""
    deadline = None if timeout is None else time.monotonic() + timeout
    reader = _Reader(fd, deadline, max_bytes)
    (doc_len,) = struct.unpack(">Q", reader.read(8))
    doc = reader.read(doc_len)
    (n_arrays,) = struct.unpack(">I", reader.read(4))
    arrays = []
    for _ in range(n_arrays):
        (size,) = struct.unpack(">Q", reader.read(8))
        arrays.append(_load_array(reader.read(size)))
    try:
        value = _loads(doc)
    except ValueError as exc:
        raise ProtocolError(f"invalid JSON: {exc}") from None
    return _untag(value, arrays)


def write_message(fd: int, value: Any) -> None:
    data = memoryview(encode(value))
    while data:
        written = _os_write(fd, data)
        data = data[written:]
