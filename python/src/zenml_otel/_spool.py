"""The spool a program leaves: reading the crate's segment files (format v1).

With `ZENML_OTEL_SPOOL_DIR` set, the crate writes each record to a spool there before the
`tracing` call returns and deletes a segment once the collector acknowledged all its
records. What a program killed by a signal (or one whose exports failed) leaves there is
read here and delivered by `_delivery`. The format is specified once, in the repository's
docs/spool.md ("The on-disk format, version 1"), which the crate's `src/spool/format.rs`
implements too; python/tests/test_shared_constants.py checks both sides agree.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import shutil
import stat
import struct
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from typing import Callable, NamedTuple

from ._handover import write_private
from ._otlp import prefixed

SPOOL_MAGIC = b"ZOTSPOOL"
SPOOL_VERSION = 1
SPOOL_HEADER_LEN = 16
SPOOL_ENTRY_HEADER_LEN = 8  # u32 length, u32 CRC-32 of the payload
SPOOL_LOCK = "lock"
SEGMENT_EXTENSION, ACKS_EXTENSION = "spool", "acks"
CONTEXT_ENTRY, RECORD_ENTRY = 1, 2
_SEGMENT_NAME = re.compile(r"[0-9a-f]{16}\." + SEGMENT_EXTENSION)

# A context entry: its run's encoded `resource` and `schema_url` fields, and its records'
# extra encoded `attributes` fields.
_Context = tuple[bytes, bytes, bytes]


class SpooledRecord(NamedTuple):
    """A spooled record and the context it was emitted in."""

    resource: bytes  # the encoded `resource` field of a ResourceLogs (may be b"")
    schema_url: bytes  # the encoded `schema_url` field of a ResourceLogs (may be b"")
    scope: str  # the instrumentation scope's name (the Rust target)
    record: bytes  # the LogRecord message


class Unreadable(NamedTuple):
    """A segment file `read_spool` could not read whole, as it found it."""

    name: str  # its file name in the spool
    data: bytes
    acks: bytes | None  # its acknowledgement log, if any
    why: str


@dataclasses.dataclass
class Spooled:
    """What `read_spool` found."""

    records: list[SpooledRecord] = dataclasses.field(default_factory=list)
    torn: int = 0  # segments whose last entry was cut short or corrupt
    corrupt: int = 0  # segment files skipped whole (no/bad header, unknown version)
    # The torn and corrupt segments that are regular files, for `keep_unreadable`.
    unreadable: list[Unreadable] = dataclasses.field(default_factory=list)


def read_spool(directory: str) -> Spooled:
    """The records of every segment in `directory`, in segment order.

    A record's context is the last context entry of its id read before it
    (the crate repeats a context in each segment that uses it). Never raises
    on what the files hold (a torn or corrupt part is counted and skipped);
    only on OS errors such as a directory it may not read. A missing directory
    is an empty spool.
    """
    spooled = Spooled()
    contexts: dict[int, _Context] = {}
    for path in _segment_paths(directory):
        data = _segment_bytes(path)
        if data is None:  # no regular file: no records of the crate's to keep
            spooled.corrupt += 1
            continue
        problem = _header_problem(data)
        if problem is not None:
            spooled.corrupt += 1
            spooled.unreadable.append(_unreadable(path, data, problem))
            continue
        records, torn = _segment_records(data, contexts)
        acknowledged = _acknowledged(path)
        spooled.records += [r for i, r in enumerate(records) if not acknowledged(i)]
        spooled.torn += torn
        if torn:
            why = f"an entry cut short or corrupt after its first {len(records)} records"
            spooled.unreadable.append(_unreadable(path, data, why))
    return spooled


def _unreadable(path: str, data: bytes, why: str) -> Unreadable:
    return Unreadable(os.path.basename(path), data, _segment_bytes(_acks_path(path)), why)


def _acks_path(segment: str) -> str:
    return segment[: -len(SEGMENT_EXTENSION)] + ACKS_EXTENSION


def _acknowledged(segment: str) -> Callable[[int], bool]:
    """Whether a segment's record (by ordinal) is in its acknowledgement log,
    `{number:016x}.acks`: entries of a u32 first ordinal and a u32 count (a
    torn last entry is ignored). A collector has those records already."""
    data = _segment_bytes(_acks_path(segment)) or b""
    ranges: list[tuple[int, int]] = [
        struct.unpack_from("<II", data, at) for at in range(0, len(data) - len(data) % 8, 8)
    ]
    return lambda ordinal: any(first <= ordinal < first + count for first, count in ranges)


def _segment_paths(directory: str) -> list[str]:
    """`{number:016x}.spool` files, by number; other names are not segments."""
    try:
        names = [n for n in os.listdir(directory) if _SEGMENT_NAME.fullmatch(n)]
    except FileNotFoundError:
        return []
    return [os.path.join(directory, n) for n in sorted(names, key=lambda n: int(n[:16], 16))]


def _segment_bytes(path: str) -> bytes | None:
    """A segment's contents; None when it is no regular file (a FIFO would
    block the read, a symlink point anywhere) or vanished."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
            return None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(os.dup(fd), "rb") as file:
            return file.read()
    finally:
        os.close(fd)


def _header_problem(data: bytes) -> str | None:
    """Why a segment's header is not one this reader reads; None when it is."""
    if len(data) < SPOOL_HEADER_LEN:
        return f"a header cut short ({len(data)} bytes)"
    if data[:8] != SPOOL_MAGIC:
        return "no spool header"
    version: int = struct.unpack_from("<I", data, 8)[0]
    if version != SPOOL_VERSION:
        return f"spool format version {version} (this helper reads {SPOOL_VERSION})"
    return None


def _segment_records(
    data: bytes, contexts: dict[int, _Context]
) -> tuple[list[SpooledRecord], bool]:
    """The records of one segment's whole entries, and whether it is torn.

    A zero length ends the data (what follows is zeros, or a reused segment's old
    entries); an entry cut short or failing its CRC is a torn tail."""
    records: list[SpooledRecord] = []
    pos = SPOOL_HEADER_LEN
    while len(data) - pos >= SPOOL_ENTRY_HEADER_LEN:
        length, crc = struct.unpack_from("<II", data, pos)
        if length == 0:
            return records, False
        start = pos + SPOOL_ENTRY_HEADER_LEN
        payload = data[start : start + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            return records, True
        try:
            record = _spool_entry(payload, contexts)
        except ValueError:
            return records, True
        if record is not None:
            records.append(record)
        pos = start + length
    # The file's end, or a length cut short.
    return records, bool(data[pos:].strip(b"\0"))


def _spool_entry(payload: bytes, contexts: dict[int, _Context]) -> SpooledRecord | None:
    """Applies one entry: a context is remembered (the last one of an id
    wins), a record returned.

    Raises:
        ValueError: If the payload is not an entry of a known kind, or a
            record names a context not seen before it.
    """
    if len(payload) < 9:
        raise ValueError("entry shorter than its kind and id")
    kind, ident = payload[0], struct.unpack_from("<Q", payload, 1)[0]
    if kind == CONTEXT_ENTRY:
        resource, pos = prefixed(payload, 9)
        schema_url, pos = prefixed(payload, pos)
        attributes, pos = prefixed(payload, pos)
        if pos != len(payload):
            raise ValueError("bytes after a context's attributes")
        contexts[ident] = (resource, schema_url, attributes)
        return None
    if kind != RECORD_ENTRY:
        raise ValueError(f"unknown entry kind {kind}")
    scope, pos = prefixed(payload, 9)
    head, pos = prefixed(payload, pos)
    if ident not in contexts:
        raise ValueError(f"record of unknown context {ident}")
    resource, schema_url, attributes = contexts[ident]
    # Protobuf fields concatenate: the context's attributes go between.
    record = head + attributes + payload[pos:]
    return SpooledRecord(resource, schema_url, scope.decode("utf-8"), record)


@contextlib.contextmanager
def spool_lock(directory: str) -> Iterator[bool]:
    """Holds the spool's lock while the `with` runs (True), or False when a
    live process holds it: a descendant of the program still writing."""
    import fcntl

    fd = os.open(os.path.join(directory, SPOOL_LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True  # the kernel drops the lock when the descriptor closes
    finally:
        os.close(fd)


def new_spool_dir() -> str | None:
    """A fresh spool directory for one program; None where `flock` is missing
    (Windows): without the lock, delivering could race a live writer."""
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return None
    return tempfile.mkdtemp(prefix="zenml-otel-spool-")


def keep_unreadable(unreadable: Sequence[Unreadable], parent: str) -> str:
    """Copies the segments `read_spool` could not read whole, with their
    acknowledgement logs, into a new directory of this user's alone (0700) in
    `parent`, each file created 0600 without following a link, and a README
    saying why each is there; returns the directory. They may hold records a
    newer helper (another format version) or a person can still read.

    Raises:
        OSError: If they could not all be written (the caller keeps the spool; the
            directory begun is removed).
    """
    directory = tempfile.mkdtemp(prefix="zenml-otel-kept-", dir=parent)
    try:
        _write_kept(unreadable, directory)
    except OSError:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return directory


def _write_kept(unreadable: Sequence[Unreadable], directory: str) -> None:
    lines = [
        "Spool segments of a zenml-otel program that its step's helper (spool format "
        f"{SPOOL_VERSION}) could not read whole; the records it could read before a damaged "
        "entry were delivered. The .acks file next to a segment lists its records a "
        "collector had acknowledged.",
        "",
    ]
    for segment in unreadable:
        _write_private_bytes(os.path.join(directory, segment.name), segment.data)
        if segment.acks is not None:
            acks = segment.name[: -len(SEGMENT_EXTENSION)] + ACKS_EXTENSION
            _write_private_bytes(os.path.join(directory, acks), segment.acks)
        lines.append(f"{segment.name}: {segment.why}")
    write_private(os.path.join(directory, "README.txt"), "\n".join(lines) + "\n")


def _write_private_bytes(path: str, data: bytes) -> None:
    """`_handover.write_private` for bytes: created 0600, never through a link, never over
    an existing file."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(path, flags, 0o600), "wb") as file:
        file.write(data)
