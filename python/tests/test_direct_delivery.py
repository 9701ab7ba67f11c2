"""Direct delivery of a spool to an `otel` store's collector (issue 25 item 8): requests are
cut by bytes as the crate cuts them (`MAX_REQUEST_BYTES`, the crate's default
max_export_batch_bytes), a record too large for any request goes alone, and no redirect is
followed (urllib's default sends a 301/302/303 POST on as a GET with every header)."""

import os
import random
from http.server import BaseHTTPRequestHandler
from typing import Any, List

import pytest

import otlp_testing as otlp
import spool_testing as sp
from otlp_testing import Collector
from test_spool import CTX_ATTRS, OTHER, RESOURCE, SCHEMA, handover
from zenml_otel import _delivery, decode_export_request
from zenml_otel._delivery import MAX_REQUEST_BYTES, deliver_spool
from zenml_otel._receipt import spool_text

T0 = 1_700_000_000_000_000_000


def big_entry(i, size, ident=7, scope="trainer::epoch"):
    head = otlp.log_record(body=f"record {i} " + "x" * size, severity_number=9, time_unix_nano=T0 + i)
    return sp.record(ident, scope, head)


def spool_with(tmp_path, entries):
    directory = tmp_path / "spool"
    directory.mkdir()
    contexts = [sp.context(7, RESOURCE, SCHEMA, CTX_ATTRS), sp.context(8, OTHER)]
    sp.write_segment(directory, 0, sp.segment(*contexts, *entries))
    return str(directory)


def delivered_bodies(collector):
    """Each record's body number, request by request."""
    return [[int(record["body"].split()[1]) for resource in request for scope in resource["scopes"]
             for record in scope["records"]] for request in collector.decoded()]


def flat(requests):
    return [number for request in requests for number in request]


def test_large_records_are_split_by_bytes_every_request_within_the_limit(tmp_path):
    # 30 records of 300 kB: 9 MB, which one request of up to 1000 records would hold.
    directory = spool_with(tmp_path, [big_entry(i, 300_000) for i in range(30)])
    with Collector() as collector:
        report = deliver_spool(directory, handover(collector.endpoint), None)
    assert (report.delivered, report.error, report.kept) == (30, "", False)
    sizes = [len(body) for _, _, body, _ in collector.requests]
    assert len(sizes) >= 3 and max(sizes) <= MAX_REQUEST_BYTES, sizes
    assert flat(delivered_bodies(collector)) == list(range(30))


def test_any_mix_of_sizes_resources_and_scopes_stays_within_the_limit(tmp_path, monkeypatch):
    limit = 20_000
    monkeypatch.setattr(_delivery, "MAX_REQUEST_BYTES", limit)
    rng = random.Random(25)
    entries = [big_entry(i, rng.choice([0, 10, 300, 3000, 9000]), ident=rng.choice([7, 8]),
                         scope=rng.choice(["a", "b" * 200]))
               for i in range(400)]
    directory = spool_with(tmp_path, entries)
    with Collector() as collector:
        report = deliver_spool(directory, handover(collector.endpoint, compression="gzip"), None)
    assert (report.delivered, report.error) == (400, "")
    bodies = collector.bodies("application/x-protobuf")  # unpacked: the limit is before gzip
    assert max(len(b) for b in bodies) <= limit
    # Full enough: the bound counted is close to the bytes sent.
    assert sum(len(b) for b in bodies) / len(bodies) > limit / 2
    assert flat(delivered_bodies(collector)) == list(range(400))


def test_a_record_larger_than_the_limit_is_sent_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(_delivery, "MAX_REQUEST_BYTES", 20_000)
    sizes = [100, 100, 50_000, 100]
    directory = spool_with(tmp_path, [big_entry(i, size) for i, size in enumerate(sizes)])
    with Collector() as collector:
        report = deliver_spool(directory, handover(collector.endpoint), None)
    assert report.delivered == 4
    assert delivered_bodies(collector) == [[0, 1], [2], [3]]


def test_a_collector_refusing_a_record_too_large_gets_the_rest(tmp_path, monkeypatch):
    """A 413 to a request of one record too large for the limit refuses that record only."""
    monkeypatch.setattr(_delivery, "MAX_REQUEST_BYTES", 20_000)
    sizes = [100, 50_000, 100]
    directory = spool_with(tmp_path, [big_entry(i, size) for i, size in enumerate(sizes)])
    with Collector(statuses=[200, 413]) as collector:
        report = deliver_spool(directory, handover(collector.endpoint), None)
    assert (report.delivered, report.oversized, report.undelivered) == (2, 1, 1)
    assert report.kept and "answered 413" in report.error and os.path.isdir(directory)
    assert delivered_bodies(collector) == [[0], [2]]  # the refused one is not decoded here
    assert "1 record too large refused" in spool_text(report)


class Recorder(otlp.LocalServer):
    """A local HTTP server keeping every request it gets, of any method; answers `status`
    with `location`."""

    def __init__(self, status=200, location=None):
        self.requests: List[Any] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorder.requests.append((self.command, self.path, dict(self.headers), body))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = do_HEAD = answer

        super().__init__(Handler)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_and_the_spool_is_kept(tmp_path, status):
    directory = spool_with(tmp_path, [big_entry(i, 10) for i in range(3)])
    with Recorder() as elsewhere:
        target = elsewhere.endpoint + "/v1/logs?token=secret"
        with Recorder(status, location=target) as collector:
            report = deliver_spool(directory, handover(collector.endpoint), None)
        assert elsewhere.requests == [], "the redirect was followed (headers and all)"
    assert [(method, path) for method, path, _, _ in collector.requests] == [("POST", "/v1/logs")]
    assert (report.delivered, report.undelivered, report.kept) == (0, 3, True)
    assert f"answered {status}" in report.error and "redirects are not followed" in report.error
    assert elsewhere.endpoint + "/v1/logs" in report.error and "secret" not in report.error
    assert os.path.isdir(directory)
    assert decode_export_request(collector.requests[0][3])  # the one request was the records
