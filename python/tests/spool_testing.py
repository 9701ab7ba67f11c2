"""A spool *writer* for the tests, format v1 (the crate writes spools; the module under test
reads them): segment files of framed entries, contexts and records."""

import fcntl
import os
import struct
import zlib
from typing import Any, Dict, Optional

import otlp_testing as otlp

MAGIC = b"ZOTSPOOL"
HEADER = MAGIC + struct.pack("<II", 1, 0)
CONTEXT, RECORD = 1, 2


def prefixed(data: bytes) -> bytes:
    return otlp.varint(len(data)) + data


def framed(payload: bytes, crc: Optional[int] = None) -> bytes:
    """An entry: length, CRC-32 of the payload (or `crc`), payload."""
    return struct.pack("<II", len(payload), zlib.crc32(payload) if crc is None else crc) + payload


def resource_field(attributes: Dict[str, Any]) -> bytes:
    """The encoded `resource` field of a ResourceLogs."""
    return otlp.length(1, otlp.key_values(1, attributes))


def schema_url_field(url: str) -> bytes:
    return otlp.string(3, url) if url else b""


def context(ident: int, resource: bytes, schema_url: bytes = b"", attributes: bytes = b"") -> bytes:
    """A framed context entry; `resource`/`schema_url`/`attributes` are encoded fields."""
    payload = bytes([CONTEXT]) + struct.pack("<Q", ident)
    return framed(payload + prefixed(resource) + prefixed(schema_url) + prefixed(attributes))


def record(ident: int, scope: str, head: bytes, tail: bytes = b"") -> bytes:
    """A framed record entry: its LogRecord is `head + context attributes + tail`."""
    payload = bytes([RECORD]) + struct.pack("<Q", ident) + prefixed(scope.encode()) + prefixed(head)
    return framed(payload + tail)


def segment(*entries: bytes, zeros: int = 0) -> bytes:
    """A segment file's bytes: header, entries, `zeros` preallocated bytes."""
    return HEADER + b"".join(entries) + bytes(zeros)


def segment_path(directory: str, number: int) -> str:
    return os.path.join(directory, f"{number:016x}.spool")


def write_segment(directory: str, number: int, data: bytes) -> str:
    path = segment_path(directory, number)
    with open(path, "wb") as file:
        file.write(data)
    return path


def hold_lock(directory: str) -> int:
    """Locks the spool as its live owner does; the descriptor (closing it unlocks)."""
    fd = os.open(os.path.join(directory, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd
