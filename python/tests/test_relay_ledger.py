# mypy: disallow-untyped-defs=False, disallow-incomplete-defs=False, disallow-untyped-calls=False
"""The relay's order and its memo of what it stored, without ZenML (the pipelines are in
test_relay_promise.py)."""

import otlp_testing as otlp
from zenml_otel._otlp import decode_log_record
from zenml_otel._relay import in_logged_order


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
