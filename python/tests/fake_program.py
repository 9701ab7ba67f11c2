"""A stand-in for a Rust program using zenml-otel: posts records to the handed-over endpoint
the way the crate does, then writes `$ZENML_OTEL_STATS_FILE` (temp file + rename).

Usage: fake_program.py MODE  where MODE is
  ok        post 3 records (gzip), write stats, exit 0
  exit3     as ok, exit 3
  nostats   post 3 records, write no stats, exit 0
  kill      post 1 record, then SIGKILL itself (no stats)
  nosecret  post 1 record without the bearer token; write the status to $FAKE_OUT
  garbage   post a malformed body; write the status to $FAKE_OUT, then one good record
  spoolkill N  as the crate with $ZENML_OTEL_SPOOL_DIR: spool N records (two segments, the
            context repeated, a torn entry last), post the first 2, write the spool's path
            to $FAKE_OUT, then SIGKILL itself (no stats)
  interleaved  post 12 records logged by `app::load` and `app::train` in turn, in one request
            grouped by scope as the crate's encoder groups them (00, 02, ... 10, 01, 03, ... 11)
"""

import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import otlp_testing as otlp
import spool_testing as sp


def records(n, start=0):
    now = time.time_ns()
    return [
        otlp.log_record(
            body=f"fake: record {i}", severity_number=13 if i == 1 else 9,
            severity_text="WARN" if i == 1 else "INFO", time_unix_nano=now + i,
            attributes={"code.file.path": "src/fake.rs", "code.line.number": 10 + i,
                        "code.namespace": "fake::main", "i": i},
        )
        for i in range(start, start + n)
    ]


def spooled_parts(n):
    """`records(n)` as the crate spools them: head, the context's attributes, tail."""
    now = time.time_ns()
    context = otlp.key_values(6, {"code.file.path": "src/fake.rs", "code.namespace": "fake::main"})
    parts = [
        (otlp.log_record(body=f"fake: record {i}", severity_number=9, severity_text="INFO",
                         time_unix_nano=now + i),
         otlp.key_values(6, {"code.line.number": 10 + i, "i": i}))
        for i in range(n)
    ]
    return context, parts


def spool_then_die(config, resource, n):
    """Spools n records, posts the first 2 (acknowledged, yet still in the spool: the spool
    is at-least-once), and dies holding the spool's lock."""
    directory = os.environ["ZENML_OTEL_SPOOL_DIR"]
    sp.hold_lock(directory)
    context, parts = spooled_parts(n)
    resource_field, half = sp.resource_field(resource), n // 2
    for number, chunk in enumerate((parts[:half], parts[half:])):
        entries = [sp.context(3, resource_field, b"", context)]
        entries += [sp.record(3, "fake", head, tail) for head, tail in chunk]
        torn = sp.record(3, "fake", b"never whole")[:-4] if number else b""
        sp.write_segment(directory, number, sp.segment(*entries, torn, zeros=256))
    acknowledged = [head + context + tail for head, tail in parts[:2]]
    assert send(config, otlp.request(resource, ("fake", ""), acknowledged)) == 200
    with open(os.environ["FAKE_OUT"], "w") as f:
        f.write(directory)
    os.kill(os.getpid(), signal.SIGKILL)


def interleaved(config, resource):
    now = time.time_ns()
    logged = [(("app::load", "app::train")[i % 2], otlp.log_record(
        body=f"fake: step {i:02}", severity_number=9, time_unix_nano=now + i * 1000))
        for i in range(12)]
    scopes = [(name, [r for s, r in logged if s == name]) for name in ("app::load", "app::train")]
    assert send(config, otlp.request_scopes(resource, scopes)) == 200


def send(config, body, auth=True):
    headers = dict(config.get("headers") or {}) if auth else {}
    return otlp.post(config["endpoint"], body, headers)[0]


def write_stats(emitted, exported):
    path = os.environ["ZENML_OTEL_STATS_FILE"]
    stats = {"emitted": emitted, "exported": exported, "dropped": 0, "failed": 0,
             "rejected": 0, "truncated": 0}
    with open(path + ".tmp", "w") as f:
        json.dump(stats, f)
    os.replace(path + ".tmp", path)


def main(mode, *args):
    config = otlp.handed_over()
    resource = {"service.name": "zenml", "telemetry.sdk.language": "rust"}
    if mode == "spoolkill":
        spool_then_die(config, resource, int(args[0]))
    if mode == "interleaved":
        interleaved(config, resource)
        write_stats(12, 12)
        return 0
    if mode == "kill":
        assert send(config, otlp.request(resource, ("fake", ""), records(1))) == 200
        os.kill(os.getpid(), signal.SIGKILL)
    if mode in ("nosecret", "garbage"):
        bad = otlp.request(resource, ("fake", ""), records(1)) if mode == "nosecret" else b"\x0a\x09garbage"
        status = send(config, bad, auth=mode == "garbage")
        with open(os.environ["FAKE_OUT"], "w") as f:
            f.write(str(status))
        if mode == "garbage":
            assert send(config, otlp.request(resource, ("fake", ""), records(1))) == 200
        return 0
    assert send(config, otlp.request(resource, ("fake", "1.0"), records(3))) == 200
    if mode != "nostats":
        write_stats(3, 3)
    return 3 if mode == "exit3" else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
