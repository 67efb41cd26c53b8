"""Reading IDX files, the format of MNIST and Fashion-MNIST, with numpy.

Written by hand because the format is 20 lines of spec and the libraries that
read it either download on import or return PIL images one at a time. The
format: two zero bytes, a dtype code, the number of dimensions, then each
dimension as a big-endian uint32, then the data, row-major, big-endian.
Files may be gzip-compressed (`.gz`), as distributed.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from math import prod
from pathlib import Path

import numpy as np

from grader.data.errors import IdxFormatError

# IDX dtype code -> numpy dtype (big-endian where it matters).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


@dataclass(frozen=True)
class IdxHeader:
    """What the first bytes of an IDX file promise about the rest."""

    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def header_bytes(self) -> int:
        return 4 + 4 * len(self.shape)

    @property
    def data_bytes(self) -> int:
        return prod(self.shape) * self.dtype.itemsize


def is_gzip(path: Path) -> bool:
    return path.suffix == ".gz"


def parse_header(raw: bytes, path: Path) -> IdxHeader:
    """Decode the magic number and dimensions from the start of an IDX file."""
    if len(raw) < 4:
        raise IdxFormatError(path, f"file is {len(raw)} bytes long, too short for an IDX header")
    zero1, zero2, code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero1 != 0 or zero2 != 0 or code not in IDX_DTYPES:
        raise IdxFormatError(
            path, f"bad magic number 0x{raw[:4].hex()} (expected 0x0000 + dtype code + ndim)"
        )
    if ndim == 0:
        raise IdxFormatError(path, "magic number says 0 dimensions")
    end = 4 + 4 * ndim
    if len(raw) < end:
        raise IdxFormatError(path, f"header promises {ndim} dimensions but the file ends first")
    shape = struct.unpack(f">{ndim}I", raw[4:end])
    return IdxHeader(dtype=IDX_DTYPES[code], shape=tuple(int(n) for n in shape))


def _read_bytes(path: Path, limit: int | None = None) -> bytes:
    """Whole (decompressed) content, or its first `limit` bytes."""
    try:
        if is_gzip(path):
            with gzip.open(path, "rb") as f:
                return f.read() if limit is None else f.read(limit)
        with open(path, "rb") as f:
            return f.read() if limit is None else f.read(limit)
    except (OSError, EOFError, zlib.error) as exc:
        # gzip raises BadGzipFile (an OSError) or EOFError on truncation.
        raise IdxFormatError(path, f"cannot be read ({type(exc).__name__}: {exc})") from exc


def read_header(path: Path) -> IdxHeader:
    """Header only: cheap, for `status()`; also checks the file's length.

    For gzip files the length check uses the gzip trailer (ISIZE, the
    uncompressed size mod 2**32), so a truncated download is caught without
    decompressing 26 MB.
    """
    header = parse_header(_read_bytes(path, limit=4 + 4 * 255), path)
    expected = header.header_bytes + header.data_bytes
    if is_gzip(path):
        try:
            with open(path, "rb") as f:
                f.seek(-4, 2)
                (isize,) = struct.unpack("<I", f.read(4))
        except OSError as exc:
            raise IdxFormatError(path, f"cannot read the gzip trailer ({exc})") from exc
        if isize != expected % 2**32:
            raise IdxFormatError(
                path,
                f"gzip trailer says {isize} bytes uncompressed but the header promises "
                f"{expected}: the file is truncated or corrupt",
            )
    else:
        actual = path.stat().st_size
        if actual != expected:
            raise IdxFormatError(
                path, f"file is {actual} bytes but its header promises {expected} (truncated?)"
            )
    return header


def read_idx(path: Path) -> np.ndarray:
    """The array stored in an IDX file, in native byte order.

    Raises `IdxFormatError` for a bad magic number, a truncated file or
    trailing bytes.
    """
    raw = _read_bytes(path)
    header = parse_header(raw, path)
    body = len(raw) - header.header_bytes
    if body != header.data_bytes:
        what = "truncated" if body < header.data_bytes else "has trailing bytes"
        raise IdxFormatError(
            path,
            f"header promises shape {header.shape} ({header.data_bytes} data bytes) "
            f"but the file holds {body}: it {what}",
        )
    data = np.frombuffer(raw, dtype=header.dtype, offset=header.header_bytes)
    # frombuffer gives a read-only view of `raw`; astype copies into a writable,
    # native-endian array that torch.from_numpy accepts without a warning.
    return data.reshape(header.shape).astype(header.dtype.newbyteorder("="), copy=True)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write `array` as an IDX file (gzip if the name ends in .gz); used by tests and tools."""
    codes = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
    dtype = np.dtype(array.dtype).newbyteorder("=")
    if dtype not in codes:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    big = array.astype(IDX_DTYPES[codes[dtype]], copy=False)
    payload = bytes([0, 0, codes[dtype], array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    ) + big.tobytes()
    if is_gzip(path):
        with gzip.open(path, "wb", compresslevel=1) as f:
            f.write(payload)
    else:
        path.write_bytes(payload)
