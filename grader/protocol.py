"""Wire format between the grader and the sandbox child: JSON plus raw .npy arrays.

No pickle crosses the boundary. A message is a JSON document in which every
numpy array is replaced by ``{"__ndarray__": k}``; the arrays follow as .npy
bytes and are read back with ``allow_pickle=False``. On arrival the decoder
accepts only JSON scalars, strings, lists, string-keyed dicts and numeric or
boolean arrays: anything else is a protocol violation, reported as such.

Decoding is bounded, not only the bytes on the wire (`DecodeLimits`): JSON
builds a Python object of about 70 bytes for every 3-byte ``[],``, so a
512 MB frame of empty lists would cost the reader tens of GB. Before
``json.loads`` runs, one pass in C over the JSON text (strings blanked out)
counts its values and measures its nesting depth; each .npy header is read
and its element count times item size checked before the array is
allocated. A violation is a `ProtocolError` whose message is a sentence.

Frame: 8-byte big-endian JSON length, JSON, 4-byte array count, then for each
array an 8-byte length and its .npy bytes.
"""
from __future__ import annotations

import io
import json
import math
import os
import select
import re
import struct
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

# Bound once at import: in the child, student code may later monkeypatch the
# json/numpy/os modules, and the wire format must not change with it.
_dumps, _loads, _np_save, _np_load = json.dumps, json.loads, np.save, np.load
_np_require = np.require  # not ascontiguousarray: that one turns 0-d arrays into shape (1,)
_os_read, _os_readv, _os_write, _select = os.read, os.readv, os.write, select.select
# Builtins too: the child decodes requests with this code after student code ran (hostile `monkeypatch` replaces `any`).
_any, _max = any, max
_np_frombuffer, _np_cumsum, _np_count_nonzero, _np_empty = np.frombuffer, np.cumsum, np.count_nonzero, np.empty
_read_magic, _read_header_1, _read_header_2 = (np.lib.format.read_magic, np.lib.format.read_array_header_1_0,
                                               np.lib.format.read_array_header_2_0)

ARRAY_TAG = "__ndarray__"
ALLOWED_DTYPE_KINDS = "biuf"  # bool, signed, unsigned, float: never object, str or void


# A request argument {GENERATOR_TAG: seed} reaches the student as a fresh torch.Generator with that seed.
GENERATOR_TAG = "__torch_generator_seed__"


def generator_arg(seed: int) -> dict[str, int]:
    """The request argument that the child turns into ``torch.Generator().manual_seed(seed)``."""
    return {GENERATOR_TAG: int(seed)}


@dataclass(frozen=True)
class DecodeLimits:
    """What one message may cost the reader once decoded, besides its bytes on the wire."""

    max_json_bytes: int = 16 << 20  # the JSON part; arrays travel as .npy, so JSON is mostly small
    max_depth: int = 64  # nesting of lists and dicts (the child's to_plain stops at 20)
    max_values: int = 500_000  # JSON values in the whole document: containers, keys and scalars
    max_items: int = 500_000  # items of one list, keys of one dict
    max_string_chars: int = 4 << 20  # one string
    max_arrays: int = 4096


DEFAULT_LIMITS = DecodeLimits()
NPY_MAX_HEADER = 10_000  # numpy's own default bound on a .npy header
MAX_ARRAY_DIMS = 32


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


# Per byte: +1 for '[' and '{', -1 for ']' and '}', 0 otherwise.
_DEPTH_STEP = np.zeros(256, dtype=np.int8)
_DEPTH_STEP[[ord("["), ord("{")]], _DEPTH_STEP[[ord("]"), ord("}")]] = 1, -1
_COUNTED = np.zeros(256, dtype=bool)  # bytes that start or separate a value outside strings
_COUNTED[[ord(c) for c in ",:[{"]] = True
_SCAN_CHUNK = 1 << 20


def _prescan(doc: bytes, limits: DecodeLimits) -> None:
    """Refuse a JSON text whose decoding would cost too much, before building any of it.

    Outside strings, every value but the first follows a ',' or a ':' or opens
    a container, so commas + colons + openers + 1 bounds the number of values
    from above, and the running sum of +1 per opener and -1 per closer is the
    nesting depth. Escaped backslashes, then escaped quotes, are removed
    first, so that every remaining '"' opens or closes a string; the parity of
    the quotes seen so far then says what is inside one. All in C (bytes,
    numpy), one megabyte at a time, so the scan itself costs a few MB. For
    invalid JSON the counts still bound what json.loads builds before it
    stops: that prefix is valid, and its counts are part of the totals.
    """
    text = doc.replace(b"\\\\", b"").replace(b'\\"', b"")
    data = _np_frombuffer(text, dtype=np.uint8)
    values, depth, deepest, inside = 1, 0, 0, 0
    for start in range(0, len(data), _SCAN_CHUNK):
        chunk = data[start:start + _SCAN_CHUNK]
        parity = (_np_cumsum(chunk == ord('"'), dtype=np.uint8) + inside) & 1  # 1 from an opening quote to before its closing one
        inside = int(parity[-1])
        outside = chunk[parity == 0]
        values += int(_np_count_nonzero(_COUNTED[outside]))
        if values > limits.max_values:
            raise ProtocolError(f"the reply holds more than {limits.max_values:,} JSON values, the limit")
        steps = _DEPTH_STEP[outside]
        steps = steps[steps != 0]
        if steps.size:
            levels = _np_cumsum(steps, dtype=np.int64) + depth
            deepest, depth = _max(deepest, int(levels.max())), int(levels[-1])
            if deepest > limits.max_depth:
                raise ProtocolError(f"the reply nests lists or dicts more than {limits.max_depth} levels deep, the limit")


def _decode_json(doc: bytes, arrays: list[np.ndarray], limits: DecodeLimits) -> Any:
    """json.loads with the tags resolved as dicts are built (no second copy of the document)."""

    def pairs_hook(pairs: list[tuple[str, Any]]) -> Any:
        if len(pairs) > limits.max_items:
            raise ProtocolError(f"a dict in the reply has {len(pairs):,} keys, more than the limit of {limits.max_items:,}")
        d = dict(pairs)
        if len(d) == 1 and ARRAY_TAG in d:
            k = d[ARRAY_TAG]
            if type(k) is not int or not 0 <= k < len(arrays):
                raise ProtocolError("array reference out of range")
            return arrays[k]
        if len(d) == 1 and "__float__" in d:
            if d["__float__"] not in ("nan", "inf", "-inf"):
                raise ProtocolError("bad float tag")
            return float(d["__float__"])
        return d

    def refuse_constant(name: str) -> Any:
        raise ProtocolError(f"the JSON constant {name} is not allowed (non-finite floats travel tagged)")

    _prescan(doc, limits)
    try:
        value = _loads(doc, object_pairs_hook=pairs_hook, parse_constant=refuse_constant)
    except ValueError as exc:  # includes integers longer than Python's int max-str-digits
        raise ProtocolError(f"invalid JSON: {exc}") from None
    except RecursionError:  # cannot happen below max_depth; kept so that it is never an internal error
        raise ProtocolError("the reply nests too deeply") from None
    _check_values(value, limits)
    return value


def _check_values(value: Any, limits: DecodeLimits) -> None:
    """Walk the decoded value in place (no copy): only plain types, bounded lists and strings."""
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is list:
            if len(v) > limits.max_items:
                raise ProtocolError(f"a list in the reply has {len(v):,} items, more than the limit of {limits.max_items:,}")
            stack.extend(v)
        elif t is dict:
            for k, x in v.items():
                if len(k) > limits.max_string_chars:
                    raise ProtocolError(f"a key in the reply is {len(k):,} characters long, more than the limit of {limits.max_string_chars:,}")
                stack.append(x)
        elif t is str:
            if len(v) > limits.max_string_chars:
                raise ProtocolError(f"a string in the reply is {len(v):,} characters long, more than the limit of {limits.max_string_chars:,}")
        elif v is None or t in (bool, int, float) or t is np.ndarray:
            continue
        else:
            raise ProtocolError(f"unexpected JSON value of type {t.__name__}")


def _array_header(head: bytes) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) from a .npy header, which numpy reads with literal_eval, never pickle."""
    fp = io.BytesIO(head)
    try:
        version = _read_magic(fp)
        read = _read_header_1 if version == (1, 0) else _read_header_2
        shape, fortran, dtype = read(fp, max_header_size=NPY_MAX_HEADER)
    except Exception as exc:  # numpy raises ValueError for junk headers
        raise ProtocolError(f"invalid array payload: {exc}") from None
    if dtype.kind not in ALLOWED_DTYPE_KINDS or dtype.hasobject or dtype.fields is not None or dtype.shape != ():
        raise ProtocolError(f"array of dtype {dtype} is not allowed")
    return shape, fortran, dtype


class _Reader:
    """Reads exact byte counts from a pipe fd, honouring an overall deadline and size cap."""

    def __init__(self, fd: int, deadline: float | None, max_bytes: int) -> None:
        self.fd, self.deadline, self.budget, self.limit = fd, deadline, max_bytes, max_bytes

    def _wait_readable(self) -> None:
        """Block until the pipe has data, or raise ReplyTimeout once the deadline has passed."""
        if self.deadline is None:
            return
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ReplyTimeout()
        ready, _, _ = _select([self.fd], [], [], left)
        if not ready:
            raise ReplyTimeout()

    def read(self, n: int) -> bytes:
        if n > self.budget:
            raise ProtocolError(f"message larger than the {self.limit >> 20} MB limit")
        self.budget -= n
        chunks: list[bytes] = []
        while n:
            self._wait_readable()
            chunk = _os_read(self.fd, min(n, 1 << 20))
            if not chunk:
                raise PeerClosed()
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def read_into(self, buf: memoryview) -> None:
        """Fill `buf` (already counted against the budget) straight from the pipe: no second copy."""
        done = 0
        while done < len(buf):
            self._wait_readable()
            got = _os_readv(self.fd, [buf[done:done + (1 << 20)]])
            if not got:
                raise PeerClosed()
            done += got

    def read_array(self, size: int) -> np.ndarray:
        """One .npy payload of `size` bytes: its header is checked before its data is allocated."""
        if size > self.budget:
            raise ProtocolError(f"message larger than the {self.limit >> 20} MB limit")
        if size < 10:
            raise ProtocolError("invalid array payload: shorter than a .npy header")
        head = self.read(10)  # magic (6), version (2), and the first bytes of the header length
        if head[6] == 1:
            header_len, head_size = struct.unpack("<H", head[8:10])[0], 10
        else:
            head += self.read(2)
            header_len, head_size = struct.unpack("<I", head[8:12])[0], 12
        if header_len > NPY_MAX_HEADER or head_size + header_len > size:
            raise ProtocolError(f"invalid array payload: a header of {header_len:,} bytes")
        shape, fortran, dtype = _array_header(head + self.read(header_len))
        if len(shape) > MAX_ARRAY_DIMS or _any(type(n) is not int or n < 0 for n in shape):
            raise ProtocolError(f"an array of shape {shape!r} is not allowed")
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        if nbytes != size - head_size - header_len:
            raise ProtocolError(f"an array of shape {shape} and dtype {dtype} needs {nbytes:,} bytes; "
                                f"{size - head_size - header_len:,} were announced")
        self.budget -= nbytes  # within the message's budget: checked above, before allocating
        arr = _np_empty(count, dtype=dtype)
        self.read_into(memoryview(arr).cast("B"))
        return arr.reshape(shape[::-1]).transpose() if fortran else arr.reshape(shape)


def read_message(fd: int, *, timeout: float | None = None, max_bytes: int = 512 << 20,
                 limits: DecodeLimits = DEFAULT_LIMITS) -> Any:
    """Read and decode one message; raises ReplyTimeout, PeerClosed or ProtocolError.

    `max_bytes` bounds the bytes read (and so the arrays' decoded size, which
    equals their payload); `limits` bounds what decoding the JSON may build.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    reader = _Reader(fd, deadline, max_bytes)
    (doc_len,) = struct.unpack(">Q", reader.read(8))
    if doc_len > limits.max_json_bytes:
        raise ProtocolError(f"the reply's JSON part is {doc_len:,} bytes, more than the limit of {limits.max_json_bytes:,}")
    doc = reader.read(doc_len)
    (n_arrays,) = struct.unpack(">I", reader.read(4))
    if n_arrays > limits.max_arrays:
        raise ProtocolError(f"the reply announces {n_arrays:,} arrays, more than the limit of {limits.max_arrays:,}")
    arrays = []
    for _ in range(n_arrays):
        (size,) = struct.unpack(">Q", reader.read(8))
        arrays.append(reader.read_array(size))
    return _decode_json(doc, arrays, limits)


def write_message(fd: int, value: Any) -> None:
    data = memoryview(encode(value))
    while data:
        written = _os_write(fd, data)
        data = data[written:]
