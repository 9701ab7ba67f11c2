"""The relay's HTTP side with raw sockets (issue 25 item 5): at most MAX_CONNECTIONS
connections hold a thread, a request's head and body are read within their deadlines (a
slowloris client is cut off, an idle kept-alive connection is not), and /v1/metrics is
answered without recording anything (issue 28)."""

import gzip
import socket
import time

import pytest

import otlp_testing as otlp
from zenml_otel import _relay_http
from zenml_otel._relay import Relay

BODY = otlp.request({"service.name": "s"}, ("t", ""), [otlp.log_record(body="one", severity_number=9)])


@pytest.fixture
def relay():
    got = []
    with Relay(lambda record, metadata: got.append(record.getMessage())) as r:
        r.got = got
        yield r


@pytest.fixture
def short_deadlines(monkeypatch):
    """Deadlines of a fraction of a second, so the tests take little time."""
    monkeypatch.setattr(_relay_http, "HEAD_SECONDS", 0.5)
    monkeypatch.setattr(_relay_http, "BODY_SECONDS", 0.5)
    monkeypatch.setattr(_relay_http, "IDLE_SECONDS", 3.0)


def connect(relay):
    port = int(relay.endpoint.split(":")[2].split("/")[0])
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def head(relay, path="/v1/logs", length=None, auth=True, extra=""):
    length = len(BODY) if length is None else length
    secret = relay.config()["headers"]["authorization"] if auth else "Bearer wrong"
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {secret}\r\n"
            f"Content-Type: application/x-protobuf\r\nContent-Length: {length}\r\n{extra}\r\n").encode()


def answer(sock):
    """One answer's status, headers and body, read off a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"closed before an answer: {data!r}"
        data += chunk
    top, rest = data.split(b"\r\n\r\n", 1)
    lines = top.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    length = int(headers["Content-Length"])
    while len(rest) < length:
        rest += sock.recv(4096)
    return int(lines[0].split()[1]), headers, rest[:length]


def closed_within(sock, seconds, trickle=b""):
    """Whether the relay closed the connection within `seconds`, while we send a byte of
    `trickle` every 0.1 s (a slowloris client)."""
    deadline = time.monotonic() + seconds
    sock.settimeout(0.1)
    for i in range(int(seconds * 10) + 1):
        if time.monotonic() > deadline:
            break
        if trickle:
            try:
                sock.sendall(trickle[i % len(trickle) : i % len(trickle) + 1])
            except OSError:
                return True  # reset: closed
        try:
            if sock.recv(4096) == b"":
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


def test_connections_beyond_the_cap_are_closed_without_a_thread(relay):
    idle = [connect(relay) for _ in range(_relay_http.MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)  # each has its thread now
        extra = connect(relay)
        assert closed_within(extra, 2), "a connection beyond the cap was served"
        assert relay.counts.get("refused_connections") >= 1
    finally:
        for sock in idle:
            sock.close()
    # The slots come back when their connections end.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        status, _ = otlp.post(relay.endpoint, BODY, relay.config()["headers"])
        if status == 200:
            break
        time.sleep(0.1)
    assert relay.got == ["one"]


def test_a_connection_that_sends_nothing_is_closed_after_the_head_deadline(relay, short_deadlines):
    started = time.monotonic()
    with connect(relay) as sock:
        assert closed_within(sock, _relay_http.HEAD_SECONDS + 3)
    assert time.monotonic() - started < _relay_http.HEAD_SECONDS + 2
    assert relay.counts.get("timed_out_requests") == 1


def test_a_slowloris_head_is_cut_off_at_its_deadline(relay, short_deadlines):
    with connect(relay) as sock:
        sock.sendall(b"POST /v1/logs HTTP/1.1\r\n")
        started = time.monotonic()
        # A header byte every 0.1 s: each read is quick, the head never ends.
        assert closed_within(sock, 5, trickle=b"X-Slow: aaaaaaaaaaaaaaaaaaaa")
        assert time.monotonic() - started < 2
    assert relay.counts.get("timed_out_requests") == 1 and relay.got == []


def test_a_slowloris_body_is_cut_off_at_its_deadline(relay, short_deadlines):
    with connect(relay) as sock:
        sock.sendall(head(relay, length=1000))
        started = time.monotonic()
        assert closed_within(sock, 5, trickle=b"\0")
        assert time.monotonic() - started < 2
    assert relay.counts.get("timed_out_requests") == 1 and relay.got == []


def test_a_kept_alive_connection_may_idle_between_requests(relay, short_deadlines):
    with connect(relay) as sock:
        sock.sendall(head(relay) + BODY)
        assert answer(sock)[0] == 200
        time.sleep(1)  # longer than the head's deadline: idle is not a slow head
        sock.sendall(head(relay) + BODY)
        assert answer(sock)[0] == 200
    assert relay.got == ["one", "one"] and relay.counts.get("timed_out_requests") == 0


def test_a_wrong_secret_closes_the_connection(relay):
    with connect(relay) as sock:
        sock.sendall(head(relay, auth=False) + BODY)
        status, headers, _ = answer(sock)
        assert (status, headers.get("Connection")) == (401, "close")
        assert closed_within(sock, 2)


def test_metrics_are_answered_with_an_empty_response_and_recorded_nowhere(relay):
    metrics = otlp.length(1, otlp.length(1, otlp.key_values(1, {"service.name": "s"})))
    with connect(relay) as sock:
        compressed = gzip.compress(metrics)
        sock.sendall(head(relay, "/v1/metrics", len(compressed), extra="Content-Encoding: gzip\r\n")
                     + compressed)
        status, headers, body = answer(sock)
        assert (status, headers["Content-Type"], body) == (200, "application/x-protobuf", b"")
        # The connection stays usable for the logs.
        sock.sendall(head(relay) + BODY)
        assert answer(sock)[0] == 200
    assert relay.got == ["one"] and relay.counts.get("received") == 1
    assert relay.counts.get("metrics_requests") == 1
    # The same secret as the logs.
    status, _ = otlp.post(relay.endpoint.replace("/v1/logs", "/v1/metrics"), metrics,
                          {"Authorization": "Bearer wrong"})
    assert status == 401
