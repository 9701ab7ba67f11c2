"""The spool a killed program leaves: `read_spool` over every entry kind, torn tails at every
offset, bad files and garbage; delivery to an `otel` store's collector (an in-test OTLP/HTTP
receiver) and what is kept when it fails. Delivery into the step's logs is in
test_pipelines.py."""

import json
import os
import random
import struct

import pytest

import otlp_testing as otlp
import spool_testing as sp
from otlp_testing import Collector
from zenml_otel import SpooledRecord, decode_export_request, read_spool
from zenml_otel._delivery import deliver_spool
from zenml_otel._handover import CONFIG_VARIABLE
from zenml_otel._receipt import spool_text

RESOURCE = sp.resource_field({"service.name": "trainer", "telemetry.sdk.language": "rust"})
OTHER = sp.resource_field({"service.name": "other"})
SCHEMA = sp.schema_url_field("https://opentelemetry.io/schemas/1.30.0")
CTX_ATTRS = otlp.key_values(6, {"zenml.step_run_name": "train", "code.file.path": "src/main.rs"})


def parts(i):
    """A record's head and tail: its context's attributes go between."""
    head = otlp.log_record(body=f"record {i}", severity_number=9, time_unix_nano=1_700_000_000_000_000_000 + i)
    tail = otlp.key_values(6, {"i": i}) + otlp.fixed32(8, 1)
    return head, tail


def spooled(i, resource=RESOURCE, schema=SCHEMA, attrs=CTX_ATTRS, scope="trainer::epoch"):
    head, tail = parts(i)
    return SpooledRecord(resource, schema, scope, head + attrs + tail)


def record_entry(i, ident=7, scope="trainer::epoch"):
    return sp.record(ident, scope, *parts(i))


# --- read_spool -----------------------------------------------------------------------------


def test_every_entry_kind_and_the_full_record(tmp_path):
    sp.write_segment(tmp_path, 0, sp.segment(
        sp.context(7, RESOURCE, SCHEMA, CTX_ATTRS), record_entry(0), record_entry(1, scope="other"),
        sp.context(8, OTHER), sp.record(8, "", b""), zeros=4096))
    result = read_spool(str(tmp_path))
    assert (result.torn, result.corrupt) == (0, 0)
    assert result.records == [
        spooled(0), spooled(1, scope="other"), SpooledRecord(OTHER, b"", "", b""),
    ]
    # The concatenation is the record the program emitted, context attributes included.
    [resource] = decode_export_request(otlp.length(1, RESOURCE + otlp.length(2, otlp.length(2, result.records[0].record))))
    [record] = resource["scopes"][0]["records"]
    assert record["body"] == "record 0" and record["flags"] == 1
    assert record["attributes"] == {"zenml.step_run_name": "train", "code.file.path": "src/main.rs", "i": 0}


def test_segments_in_number_order_and_a_repeated_context(tmp_path):
    # Written out of order; 0x10 sorts after 0x0f as a number, and after 0x2 too.
    sp.write_segment(tmp_path, 0x10, sp.segment(sp.context(7, OTHER), record_entry(3)))
    sp.write_segment(tmp_path, 0x2, sp.segment(sp.context(7, RESOURCE, SCHEMA, CTX_ATTRS), record_entry(0), record_entry(1)))
    sp.write_segment(tmp_path, 0xF, sp.segment(sp.context(7, RESOURCE, SCHEMA, CTX_ATTRS), record_entry(2)))
    (tmp_path / "lock").write_bytes(b"")
    (tmp_path / "0000000000000003.spool.tmp").write_bytes(b"not a segment name")
    (tmp_path / "000000000000000A.spool").write_bytes(b"upper case: not the crate's name")
    result = read_spool(str(tmp_path))
    assert result.records == [spooled(0), spooled(1), spooled(2), spooled(3, OTHER, b"", b"")]
    assert (result.torn, result.corrupt) == (0, 0)


def test_missing_directory_is_an_empty_spool(tmp_path):
    result = read_spool(str(tmp_path / "nothing"))
    assert (result.records, result.torn, result.corrupt) == ([], 0, 0)


def three_records():
    """A segment's entries, and the records read when all of them up to each end are whole."""
    entries = [sp.context(7, RESOURCE, SCHEMA, CTX_ATTRS), record_entry(0), record_entry(1), record_entry(2)]
    return entries, [spooled(0), spooled(1), spooled(2)]


def damaged(tmp_path, data):
    """The spool read with segment 1 holding `data`."""
    sp.write_segment(tmp_path, 1, data)
    return read_spool(str(tmp_path))


def test_a_reused_segment_ends_at_its_zero_length(tmp_path):
    # The crate reuses acknowledged segments: a zero length ends what was written anew, and the
    # whole old entries after it are neither read nor a torn tail.
    old = b"".join([sp.context(7, RESOURCE, SCHEMA, CTX_ATTRS), *[record_entry(i) for i in range(10, 14)]])
    data = sp.segment(sp.context(7, RESOURCE, SCHEMA, CTX_ATTRS), record_entry(0)) + bytes(4) + old
    sp.write_segment(tmp_path, 0, data)
    result = read_spool(str(tmp_path))
    assert (result.torn, result.corrupt) == (0, 0)
    assert result.records == [spooled(0)]


def test_records_in_the_acknowledgement_log_are_not_read(tmp_path):
    # The crate logs which records a collector acknowledged (`{number}.acks`: u32 first
    # ordinal, u32 count); they are not delivered again. A torn last entry is ignored.
    path = sp.write_segment(tmp_path, 0, sp.segment(
        sp.context(7, RESOURCE, SCHEMA, CTX_ATTRS), *[record_entry(i) for i in range(5)]))
    with open(path[: -len("spool")] + "acks", "wb") as acks:
        acks.write(struct.pack("<II", 1, 2) + struct.pack("<II", 4, 1) + b"\x03\x00")
    result = read_spool(str(tmp_path))
    assert (result.torn, result.corrupt) == (0, 0)
    assert result.records == [spooled(0), spooled(3)]


def test_a_torn_last_entry_at_every_offset_keeps_the_entries_before(tmp_path):
    entries, records = three_records()
    whole = sp.segment(*entries)
    last = len(whole) - len(entries[-1])
    sp.write_segment(tmp_path, 0, sp.segment(sp.context(9, OTHER), sp.record(9, "first", b"")))
    before = [SpooledRecord(OTHER, b"", "first", b"")]
    for cut in range(last, len(whole)):
        # Cut short (killed mid-write), or cut into the preallocated zeros: when every byte
        # not written was a zero, the zeros complete the entry.
        complete = not whole[cut:].strip(b"\0")
        for data, whole_entry in ((whole[:cut], False), (whole[:cut] + bytes(4096), complete)):
            result = damaged(tmp_path, data)
            assert result.records == before + records[: 3 if whole_entry else 2], cut
            # Torn unless what is there of the entry is zeros only (a length not yet written).
            torn = not whole_entry and bool(whole[last:cut].strip(b"\0"))
            assert (result.torn, result.corrupt) == (int(torn), 0), cut


def test_a_corrupt_byte_anywhere_in_the_last_entry_keeps_the_entries_before(tmp_path):
    entries, records = three_records()
    whole = sp.segment(*entries, zeros=64)
    last = len(sp.segment(*entries[:-1]))
    for at in range(last, len(sp.segment(*entries))):
        data = bytearray(whole)
        data[at] ^= 0xFF
        result = damaged(tmp_path, bytes(data))
        assert result.records == records[:2], at
        assert (result.torn, result.corrupt) == (1, 0), at


def test_a_corrupt_entry_mid_segment_ends_that_segment_only(tmp_path):
    entries, records = three_records()
    bad = sp.record(7, "x", b"") [:-1] + b"?"  # CRC no longer matches
    sp.write_segment(tmp_path, 0, sp.segment(entries[0], entries[1], bad, entries[2], entries[3]))
    sp.write_segment(tmp_path, 1, sp.segment(entries[0], entries[3]))
    result = read_spool(str(tmp_path))
    assert result.records == [records[0], records[2]]
    assert (result.torn, result.corrupt) == (1, 0)


@pytest.mark.parametrize("payload", [
    b"\x02",  # a kind, no id
    b"\x01" + bytes(7),  # an id cut short
    b"\x03" + bytes(8),  # an unknown kind
    b"\x01" + bytes(8) + b"\x05ab",  # a context's resource runs past the payload
    b"\x01" + bytes(8) + b"\x00\x00\x00junk",  # bytes after a context's attributes
    b"\x02" + (99).to_bytes(8, "little") + b"\x00\x00",  # a record of an unknown context
    b"\x02" + (7).to_bytes(8, "little") + b"\x02\xff\xfe\x00",  # a scope that is not UTF-8
    b"\x02" + (7).to_bytes(8, "little") + b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",  # varint
])
def test_entries_that_do_not_parse_are_a_torn_tail(tmp_path, payload):
    entries, records = three_records()
    result = damaged(tmp_path, sp.segment(entries[0], entries[1], sp.framed(payload), entries[2]))
    assert result.records == records[:1]
    assert (result.torn, result.corrupt) == (1, 0)


@pytest.mark.parametrize("data", [
    b"",
    sp.MAGIC,  # a header cut short
    b"ZOTSPOOX" + bytes(8),  # wrong magic
    sp.MAGIC + (2).to_bytes(4, "little") + bytes(4),  # a version this reader does not know
    sp.MAGIC + (0).to_bytes(4, "little") + bytes(4),
])
def test_bad_headers_skip_the_file_and_are_counted(tmp_path, data):
    entries, records = three_records()
    sp.write_segment(tmp_path, 0, data + b"".join(entries))
    sp.write_segment(tmp_path, 1, sp.segment(*entries))
    result = read_spool(str(tmp_path))
    assert result.records == records
    assert (result.torn, result.corrupt) == (0, 1)


def test_files_that_are_no_regular_file_are_skipped(tmp_path):
    entries, records = three_records()
    os.mkfifo(sp.segment_path(tmp_path, 0))  # reading would block
    os.symlink(sp.write_segment(tmp_path, 5, sp.segment(*entries)), sp.segment_path(tmp_path, 1))
    os.mkdir(sp.segment_path(tmp_path, 2))
    result = read_spool(str(tmp_path))
    assert result.records == records
    assert result.corrupt == 3


def test_garbage_never_raises(tmp_path):
    entries, _ = three_records()
    good = sp.segment(*entries)
    rng = random.Random(1234)
    for round_ in range(400):
        if round_ % 2:
            data = bytearray(good)
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            data = bytes(data[: rng.randint(0, len(data))])
        else:
            data = sp.HEADER + bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
        result = damaged(tmp_path, data)
        assert result.torn + result.corrupt <= 1
        assert len(result.records) <= 3


# --- delivery to an otel store's collector (the direct path) --------------------------------


def handover(endpoint, **config):
    return {CONFIG_VARIABLE: json.dumps({"endpoint": endpoint, "headers": {"x-api-key": "k"},
                                         "export_timeout_millis": 5000, **config})}


def a_spool(tmp_path, n, other_from=None):
    """`n` records in segments of 400; from `other_from` on, under another resource."""
    directory = tmp_path / "spool"
    directory.mkdir()
    for number, start in enumerate(range(0, n, 400)):
        entries = [sp.context(7, RESOURCE, SCHEMA, CTX_ATTRS), sp.context(8, OTHER)]
        for i in range(start, min(n, start + 400)):
            entries.append(record_entry(i, ident=8 if other_from is not None and i >= other_from else 7))
        sp.write_segment(directory, number, sp.segment(*entries, zeros=128))
    return str(directory)


def test_direct_delivery_in_batches_of_1000_under_their_resources(tmp_path):
    directory = a_spool(tmp_path, 2500, other_from=2200)
    with Collector() as collector:
        report = deliver_spool(directory, handover(collector.endpoint, compression="gzip"), None)
    assert (report.found, report.delivered, report.error, report.kept) == (2500, 2500, "", False)
    assert not os.path.exists(directory)
    assert [r[0] for r in collector.requests] == ["/v1/logs"] * 3
    headers = collector.requests[0][1]
    assert headers["x-api-key"] == "k" and headers["Content-Encoding"] == "gzip"
    assert headers["Content-Type"] == "application/x-protobuf"
    requests = collector.decoded()
    bodies = []
    for request in requests:
        for resource in request:
            for scope in resource["scopes"]:
                assert scope["name"] == "trainer::epoch"
                for record in scope["records"]:
                    bodies.append((resource["resource"]["service.name"], record["body"]))
                    assert record["attributes"]["i"] == int(record["body"].split()[1])
    assert [len(b) for b in (bodies[:1000], bodies[1000:2000], bodies[2000:])] == [1000, 1000, 500]
    assert bodies == [("other" if i >= 2200 else "trainer", f"record {i}") for i in range(2500)]
    # The last request: the first resource's records, then the other's.
    assert [r["resource"]["service.name"] for r in requests[2]] == ["trainer", "other"]
    assert "zenml.step_run_name" in requests[0][0]["scopes"][0]["records"][0]["attributes"]


def test_direct_delivery_uncompressed_to_a_full_logs_url(tmp_path):
    directory = a_spool(tmp_path, 3)
    with Collector() as collector:
        report = deliver_spool(directory, handover(collector.endpoint + "/v1/logs/"), None)
    assert report.delivered == 3
    [(path, headers, body, _)] = collector.requests
    assert path == "/v1/logs" and headers.get("Content-Encoding") is None
    assert [r["body"] for r in decode_export_request(body)[0]["scopes"][0]["records"]] == [
        "record 0", "record 1", "record 2"]


def test_a_collector_that_comes_back_gets_the_request_again(tmp_path):
    directory = a_spool(tmp_path, 3)
    with Collector(statuses=[503]) as collector:
        report = deliver_spool(directory, handover(collector.endpoint), None)
    assert report.delivered == 3 and len(collector.requests) == 2


def test_a_refusing_collector_keeps_the_spool_and_says_why(tmp_path):
    directory = a_spool(tmp_path, 1200)
    with Collector(statuses=[200, 400]) as collector:
        report = deliver_spool(directory, handover(collector.endpoint), None)
    assert (report.delivered, report.undelivered, report.kept) == (1000, 200, True)
    assert "answered 400" in report.error and os.path.isdir(directory)
    text = spool_text(report)
    assert text.startswith("; delivered 1000 records from its spool; 200 not delivered: ")
    assert text.endswith(f"(spool kept in {directory})")


def test_no_collector_configured_keeps_the_spool(tmp_path):
    directory = a_spool(tmp_path, 2)
    report = deliver_spool(directory, {}, None)
    assert report.delivered == 0 and report.kept and "no otel log store" in report.error


def test_a_spool_still_locked_by_a_live_process_is_left_alone(tmp_path):
    directory = a_spool(tmp_path, 2)
    fd = sp.hold_lock(directory)
    try:
        report = deliver_spool(directory, handover("http://127.0.0.1:9"), None)
    finally:
        os.close(fd)
    assert (report.found, report.kept) == (0, True) and "live process" in report.error
    assert spool_text(report).startswith("; its spool was not read: a live process still holds it")
    assert read_spool(directory).records  # untouched


def test_an_empty_spool_is_removed_and_not_mentioned(tmp_path):
    directory = tmp_path / "spool"
    directory.mkdir()
    report = deliver_spool(str(directory), {}, None)
    assert not directory.exists() and spool_text(report) == ""


def test_torn_and_malformed_are_said(tmp_path):
    directory = tmp_path / "spool"
    directory.mkdir()
    entries, _ = three_records()
    malformed = sp.record(7, "x", b"\x0a\x09nope")  # a LogRecord field running past its end
    sp.write_segment(directory, 0, sp.segment(*entries, malformed, entries[1][:-3]))
    with Collector() as collector:
        report = deliver_spool(str(directory), handover(collector.endpoint), None)
    assert (report.delivered, report.malformed, report.torn, report.kept) == (3, 1, 1, False)
    # The torn segment is kept beside the spool (test_spool_kept.py).
    assert spool_text(report) == (
        "; delivered 3 records from its spool (1 malformed record skipped, 1 torn tail skipped)"
        f"; what it could not read is kept in {report.unreadable_kept}"
    )
