# mypy: disallow-untyped-defs=False, disallow-incomplete-defs=False, disallow-untyped-calls=False
"""The relay's order and its memo of what it stored, without ZenML (the pipelines are in
test_relay_promise.py)."""

import logging
import threading
import time

import otlp_testing as otlp
from zenml_otel._console import Console
from zenml_otel._ledger import digest
from zenml_otel._otlp import decode_log_record
from zenml_otel._relay import Relay, in_logged_order


def decoded(body, time=0, observed=0):
    return decode_log_record(otlp.log_record(body=body, time_unix_nano=time,
                                             observed_time_unix_nano=observed))


def test_records_are_ordered_by_time_then_observed_time_ties_stable():
    records = [("b", decoded("b1", time=20)), ("b", decoded("b2", observed=40)),
               ("a", decoded("a1", time=10)), ("a", decoded("a2", time=20)),
               ("a", decoded("a3", time=30, observed=5))]
    assert [r["body"] for _, r in in_logged_order(records)] == ["a1", "b1", "a2", "a3", "b2"]


def test_a_record_without_time_stays_after_the_one_before_it():
    records = [("t", decoded("none first")), ("t", decoded("late", time=50)),
               ("t", decoded("none after late")), ("u", decoded("early", time=10))]
    assert [r["body"] for _, r in in_logged_order(records)] == [
        "none first", "early", "late", "none after late"]


def timed_request(n, now=10**18):
    records = [otlp.log_record(body=f"r{i}", severity_number=9, time_unix_nano=now + i)
               for i in range(n)]
    return otlp.request({"service.name": "s"}, ("t", ""), records)


def post_until_200(relay, body, tries=10):
    """As the crate: a 503 is sent again (after its Retry-After), anything else is final."""
    statuses = []
    for _ in range(tries):
        status, _ = otlp.post(relay.endpoint, body, relay.config()["headers"])
        statuses.append(status)
        if status != 503:
            break
    return statuses


def test_a_store_that_fails_mid_request_is_retried_and_stores_each_record_once():
    got: list[str] = []
    failed: list[logging.LogRecord] = []

    def flaky(record, metadata):
        if record.getMessage() == "r2" and not failed:
            failed.append(record)
            raise OSError("disk full")
        got.append(record.getMessage())

    with Relay(flaky) as relay:
        statuses = post_until_200(relay, timed_request(4))
    assert statuses == [503, 200]
    assert got == ["r0", "r1", "r2", "r3"]


class Printed(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_the_relay_shows_each_record_on_the_console_once_when_stored():
    """Printed after the store took it: a record whose store failed is printed on the retry
    that stores it, never twice; one below the root logger's level is stored, not printed."""
    got: list[str] = []
    failed: list[str] = []

    def flaky(record, metadata):
        if record.getMessage() == "r2" and not failed:
            failed.append("r2")
            raise OSError("disk full")
        got.append(record.getMessage())

    printed = Printed()
    records = [otlp.log_record(body=f"r{i}", severity_number=9, time_unix_nano=10**18 + i)
               for i in range(4)]
    records.append(otlp.log_record(body="detail", severity_number=5, time_unix_nano=10**18 + 9))
    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.INFO)
    try:
        with Relay(flaky, console=Console([printed])) as relay:
            statuses = post_until_200(relay, otlp.request({"service.name": "s"}, ("t", ""), records))
    finally:
        root.setLevel(level)
    assert statuses == [503, 200]
    assert got == ["r0", "r1", "r2", "r3", "detail"]
    assert printed.lines == ["r0", "r1", "r2", "r3"]


def test_a_request_resent_while_its_first_copy_is_stored_stores_nothing_twice():
    got, first = [], threading.Event()

    def slow(record, metadata):
        if not first.is_set():
            first.set()
            time.sleep(3)  # longer than the second copy's wait: it answers 503 first
        got.append(record.getMessage())

    with Relay(slow) as relay:
        body = timed_request(3)
        results = []
        sender = threading.Thread(target=lambda: results.append(post_until_200(relay, body)))
        sender.start()
        assert first.wait(5)
        again = post_until_200(relay, body)  # the program's export timed out: sent again
        sender.join(10)
    assert results == [[200]] and again[-1] == 200 and 503 in again
    assert got == ["r0", "r1", "r2"]


def test_spool_delivery_waits_for_records_a_request_is_still_storing(tmp_path):
    got, first = [], threading.Event()

    def slow(record, metadata):
        if not first.is_set():
            first.set()
            time.sleep(1)
        got.append(record.getMessage())

    encoded = [otlp.log_record(body=f"r{i}", time_unix_nano=10**18 + i) for i in range(3)]
    with Relay(slow) as relay:
        body = otlp.request({"service.name": "s"}, ("t", ""), encoded)
        sender = threading.Thread(target=post_until_200, args=(relay, body))
        sender.start()
        assert first.wait(5)
        # What run_rust_step does with the dead program's spool, while the request is stored.
        records = [decode_log_record(data) for data in encoded]
        stored = relay.store([("t", r, digest("t", d, r)) for d, r in zip(encoded, records)], 30)
        sender.join(10)
    assert (stored.stored, stored.duplicates, stored.error) == (0, 3, None)
    assert got == ["r0", "r1", "r2"]
