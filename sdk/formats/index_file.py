"""The index file format (`.sidx`), read and written by `HammingIndex` and `MultiIndexHashingIndex`.

Little-endian: a 64-byte header = magic b"SADHIDX", format version (u8, 1), bits (u16), word bytes (u16, 4 or 8),
flags (u32, 0), count (u64), blake2b-128 digest of the header fields + payload, zero padding; then ids (count x int64),
then the word planes (words x count x word bytes, `sadh.sdk.hamming_scan`), so ids and planes can be memory-mapped.
Saving writes a temporary file and renames it, so a failed save leaves the old file.
"""
from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..atomic import atomic_open
from ..codes import bits_fit
from ..errors import SadhError
from ..hamming_scan import word_count, word_dtype
from ..memory import physical_memory

_MAGIC = b"SADHIDX"
_VERSION = 1
_HEADER = struct.Struct("<7sBHHIQ16s")  # magic, version, bits, word bytes, flags, count, blake2b-128
_HEADER_SIZE = 64


def _digest(header_fields: bytes, ids: np.ndarray, planes: np.ndarray) -> bytes:
    """blake2b-128 over the header fields, ids and planes."""
    h = hashlib.blake2b(header_fields, digest_size=16)
    h.update(memoryview(np.ascontiguousarray(ids)).cast("B"))
    for plane in planes:
        h.update(memoryview(np.ascontiguousarray(plane)).cast("B"))
    return h.digest()


def save_arrays(
    path: str | os.PathLike, bits: int, ids: np.ndarray, planes: np.ndarray, before_replace: Callable[[str], None] | None = None
) -> bytes:
    """Write header + ids (int64 LE) + planes (words x n, LE) atomically; return the digest. `before_replace(digest hex)`
    runs once the new file is complete, before it replaces `path`."""
    fields = _HEADER.pack(_MAGIC, _VERSION, bits, planes.dtype.itemsize, 0, ids.size, b"")[:-16]
    digest = _digest(fields, ids, planes)
    with atomic_open(path, "wb", size=file_size(bits, ids.size)) as f:
        f.write((fields + digest).ljust(_HEADER_SIZE, b"\0"))
        f.write(memoryview(np.ascontiguousarray(ids, "<i8")).cast("B"))
        for plane in planes:
            f.write(memoryview(np.ascontiguousarray(plane)).cast("B"))
        f.flush()
        if before_replace is not None:
            before_replace(digest.hex())
    return digest


def file_size(bits: int, count: int) -> int:
    """Bytes of an index file of `count` codes of `bits` bits."""
    return _HEADER_SIZE + 8 * count + word_count(bits) * word_dtype(bits).itemsize * count


def file_digest(path: str | os.PathLike) -> bytes | None:
    """The digest in the header of the index file at `path` (None: no such file, or not a valid one)."""
    try:
        return read_header(path).digest
    except SadhError:
        return None


@dataclass(frozen=True)
class FileHeader:
    """The validated header of an index file: code length, number of codes, blake2b-128 digest, the digested fields."""

    bits: int
    count: int
    digest: bytes
    fields: bytes


def read_header(path: str | os.PathLike) -> FileHeader:
    """Read and validate the header of a file written by `save_arrays` (also its size); the payload is not read."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(_HEADER_SIZE)
    except OSError as e:
        raise SadhError(f"{path}: cannot read index file ({e.strerror})") from None
    if len(head) < _HEADER_SIZE or not head.startswith(_MAGIC):
        raise SadhError(f"{path}: not a sadh index file (bad magic)")
    magic, version, bits, wbytes, flags, count, digest = _HEADER.unpack(head[: _HEADER.size])
    if version != _VERSION:
        raise SadhError(f"{path}: unsupported index format version {version} (this build reads {_VERSION})")
    if not bits_fit(bits) or wbytes != word_dtype(bits).itemsize or flags:
        raise SadhError(f"{path}: corrupt index header (bits={bits}, word bytes={wbytes}, flags={flags})")
    expected = file_size(bits, count)
    if size != expected:
        raise SadhError(f"{path}: truncated or corrupt index file ({size} bytes, expected {expected})")
    return FileHeader(bits, count, digest, head[: _HEADER.size - 16])


def load_arrays(path: str | os.PathLike, mmap: bool, verify: bool) -> tuple[FileHeader, np.ndarray, np.ndarray]:
    """Read and validate a file written by `save_arrays`: (header, ids, planes); with `mmap` ids and planes are mapped.

    What opening needs in memory (the sorted ids and their positions; with mmap=False also ids and planes) must fit
    in the physical memory, else SadhError, before anything is read (a header may claim any count)."""
    path = Path(path)
    header = read_header(path)
    bits, count = header.bits, header.count
    wd, nwords = word_dtype(bits), word_count(bits)
    need = 2 * 8 * count + (0 if mmap else file_size(bits, count))
    if need > physical_memory():
        raise SadhError(
            f"{path}: opening its {count} codes needs {need / 2**30:.4g} GiB of memory, more than this machine has "
            f"({physical_memory() / 2**30:.4g} GiB){'' if mmap else '; open it memory-mapped (mmap=True) to need less'}"
        )
    offset = _HEADER_SIZE + 8 * count
    if mmap and count:
        ids = np.memmap(path, "<i8", "r", offset=_HEADER_SIZE, shape=(count,))
        planes = np.memmap(path, wd, "r", offset=offset, shape=(nwords, count))
    else:
        ids = np.fromfile(path, "<i8", count, offset=_HEADER_SIZE).astype(np.int64)
        planes = np.fromfile(path, wd, nwords * count, offset=offset).reshape(nwords, count)
    if verify and _digest(header.fields, ids, planes) != header.digest:
        raise SadhError(f"{path}: index file checksum mismatch (corrupt file)")
    return header, ids, planes
