"""What a spool holds that cannot be read is kept, and said where (issue 25 item 4): a segment
of another format version, with a bad header or a torn entry is copied, with its
acknowledgement log, into a private directory beside the spool (0700, files 0600) before the
spool is removed; the receipt and the step's metadata name it; a spool whose unreadable
segments could not be copied stays where it is."""

import os
import stat
from pathlib import Path

import spool_testing as sp
from otlp_testing import Collector
from test_spool import CTX_ATTRS, RESOURCE, SCHEMA, handover, record_entry
from zenml_otel import _delivery
from zenml_otel._delivery import deliver_spool
from zenml_otel._receipt import receipt, spool_text
from zenml_otel._relay import Relay

ENTRIES = [sp.context(7, RESOURCE, SCHEMA, CTX_ATTRS), record_entry(0), record_entry(1)]
NEWER = sp.MAGIC + (2).to_bytes(4, "little") + bytes(4) + b"records of format 2"


def spool_of(tmp_path, segments):
    """A spool directory in tmp_path/parent holding `segments` ({number: bytes})."""
    parent = tmp_path / "parent"
    directory = parent / "spool"
    directory.mkdir(parents=True)
    for number, data in segments.items():
        sp.write_segment(directory, number, data)
    return directory


def kept_dir(report):
    kept = Path(report.unreadable_kept)
    assert kept.is_dir() and kept.name.startswith("zenml-otel-kept-"), report
    return kept


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_segment_of_another_format_version_is_kept_beside_the_spool(tmp_path):
    directory = spool_of(tmp_path, {0: NEWER, 1: sp.segment(*ENTRIES)})
    with Collector() as collector:
        report = deliver_spool(str(directory), handover(collector.endpoint), None)
    assert (report.found, report.delivered, report.corrupt, report.kept) == (2, 2, 1, False)
    assert not directory.exists()  # the spool is gone, what it could not read is not
    kept = kept_dir(report)
    assert kept.parent == directory.parent
    assert sorted(p.name for p in kept.iterdir()) == ["0000000000000000.spool", "README.txt"]
    assert (kept / "0000000000000000.spool").read_bytes() == NEWER
    assert mode(kept) == 0o700
    assert {mode(p) for p in kept.iterdir()} == {0o600}
    assert "0000000000000000.spool: spool format version 2" in (kept / "README.txt").read_text()
    text = spool_text(report)
    assert text == ("; delivered 2 records from its spool (1 unreadable segment skipped)"
                    f"; what it could not read is kept in {kept}")


def test_the_receipt_and_the_metadata_say_where(tmp_path):
    directory = spool_of(tmp_path, {0: NEWER})
    report = deliver_spool(str(directory), {}, None)
    line, metadata, ok = receipt(["prog"], 0, str(tmp_path / "no-stats"), None, report)
    kept = kept_dir(report)
    assert line.endswith(f"; what it could not read is kept in {kept}"), line
    assert metadata["spool_unreadable_kept"] == str(kept) and metadata["spool_corrupt"] == 1
    assert not ok  # records may be missing from the step's logs


def test_a_torn_segment_is_kept_with_its_acknowledgements_and_its_head_delivered(tmp_path):
    torn = sp.segment(*ENTRIES, record_entry(2)[:-3])
    directory = spool_of(tmp_path, {3: torn})
    acks = (0).to_bytes(4, "little") + (1).to_bytes(4, "little")
    (directory / "0000000000000003.acks").write_bytes(acks)
    got = []
    with Relay(lambda record, metadata: got.append(record.getMessage())) as relay:
        report = deliver_spool(str(directory), {}, relay)
    # Record 0 was acknowledged, record 1 is delivered, record 2 is the torn entry.
    assert got == ["record 1 i=1"] and (report.delivered, report.torn) == (1, 1)
    kept = kept_dir(report)
    assert (kept / "0000000000000003.spool").read_bytes() == torn
    assert (kept / "0000000000000003.acks").read_bytes() == acks
    assert "cut short or corrupt after its first 2 records" in (kept / "README.txt").read_text()
    assert not directory.exists()


def test_a_bad_header_is_kept_on_the_relay_path_too(tmp_path):
    bad = b"ZOTSPOOX" + bytes(8) + b"".join(ENTRIES)
    directory = spool_of(tmp_path, {0: bad})
    with Relay(lambda record, metadata: None) as relay:
        report = deliver_spool(str(directory), {}, relay)
    assert (report.found, report.corrupt) == (0, 1)
    assert (kept_dir(report) / "0000000000000000.spool").read_bytes() == bad
    assert not directory.exists()


def test_when_they_cannot_be_kept_elsewhere_the_spool_stays(tmp_path, monkeypatch):
    def full(unreadable, parent):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_delivery, "keep_unreadable", full)
    directory = spool_of(tmp_path, {0: NEWER})
    report = deliver_spool(str(directory), {}, None)
    assert report.kept and "No space left on device" in report.error, report
    assert (directory / "0000000000000000.spool").read_bytes() == NEWER
    assert spool_text(report).endswith(f"(spool kept in {directory})")


def test_a_spool_kept_whole_keeps_its_unreadable_segments_in_it(tmp_path):
    directory = spool_of(tmp_path, {0: NEWER, 1: sp.segment(*ENTRIES)})
    report = deliver_spool(str(directory), handover("http://127.0.0.1:9"), None)  # refused
    assert report.kept and report.unreadable_kept == ""
    assert (directory / "0000000000000000.spool").read_bytes() == NEWER


def test_no_regular_file_is_nothing_to_keep(tmp_path):
    """A link or a FIFO named like a segment holds no records of the crate's (it writes regular
    files only): counted, not copied, and a link's target is left alone."""
    outside = tmp_path / "outside"
    outside.write_bytes(sp.segment(*ENTRIES))
    directory = spool_of(tmp_path, {})
    os.symlink(outside, sp.segment_path(directory, 0))
    os.mkfifo(sp.segment_path(directory, 1))
    report = deliver_spool(str(directory), {}, None)
    assert (report.corrupt, report.unreadable_kept, report.kept) == (2, "", False)
    assert not directory.exists() and outside.read_bytes() == sp.segment(*ENTRIES)


def test_a_copy_that_fails_midway_leaves_no_partial_directory(tmp_path, monkeypatch):
    from zenml_otel import _spool

    def full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_spool, "_write_private_bytes", full)
    directory = spool_of(tmp_path, {0: NEWER})
    report = deliver_spool(str(directory), {}, None)
    assert report.kept and (directory / "0000000000000000.spool").read_bytes() == NEWER
    assert sorted(p.name for p in directory.parent.iterdir()) == ["spool"]
