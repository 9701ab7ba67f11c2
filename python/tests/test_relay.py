"""The relay's HTTP side, with a plain list as the place records go (the ZenML side is in
test_pipelines.py): status codes, limits, clients that go away, shutdown."""

import gzip
import http.client
import json
import socket
import threading
import urllib.error
import urllib.request

import pytest

import otlp_testing as otlp
from zenml_otel import child_env
from zenml_otel._handover import CONFIG_VARIABLE
from zenml_otel._relay import Relay

BODY = otlp.request({"service.name": "s"}, ("t", ""), [otlp.log_record(body="one", severity_number=9)])


@pytest.fixture
def relay():
    got = []
    with Relay(lambda record, metadata: got.append(record), max_body_bytes=1 << 20) as r:
        r.got = got
        yield r


def auth(relay):
    return relay.config()["headers"]


def test_ok_with_gzip_and_identity(relay):
    assert otlp.post(relay.endpoint, BODY, auth(relay)) == (200, b"")
    assert otlp.post(relay.endpoint, BODY, auth(relay), gzipped=False) == (200, b"")
    assert [r.getMessage() for r in relay.got] == ["one", "one"]


@pytest.mark.parametrize(
    "headers,status",
    [({}, 401), ({"Authorization": "Bearer wrong"}, 401), ({"Authorization": "bearer x"}, 401)],
)
def test_wrong_secret_is_401_and_nothing_is_emitted(relay, headers, status):
    assert otlp.post(relay.endpoint, BODY, headers)[0] == status
    assert relay.got == [] and relay.counts.get("received") == 0


def test_wrong_path_is_404(relay):
    assert otlp.post(relay.endpoint.replace("/v1/logs", "/v1/traces"), BODY, auth(relay))[0] == 404


def test_malformed_body_is_400(relay):
    assert otlp.post(relay.endpoint, b"\x0a\x09nope", auth(relay))[0] == 400
    assert otlp.post(relay.endpoint, b"not gzip", {**auth(relay), "Content-Encoding": "gzip"}, gzipped=False)[0] == 400


def test_other_encodings_and_types_are_415(relay):
    headers = {**auth(relay), "Content-Encoding": "zstd"}
    assert otlp.post(relay.endpoint, BODY, headers, gzipped=False)[0] == 415
    assert otlp.post(relay.endpoint, b"{}", auth(relay), gzipped=False, content_type="application/json")[0] == 415


def test_large_bodies_are_413(relay):
    big = b"\0" * (2 << 20)
    assert otlp.post(relay.endpoint, big, auth(relay), gzipped=False)[0] == 413
    # A small gzip body that unpacks beyond the limit too.
    assert otlp.post(relay.endpoint, big, auth(relay), gzipped=True)[0] == 413


def test_a_failing_store_is_503_with_retry_after():
    """Retryable for the crate (a 500 is final: it would drop the request from its spool)."""
    def refuse(record, metadata):
        raise OSError("disk full")

    with Relay(refuse) as relay:
        data = gzip.compress(BODY)
        req = urllib.request.Request(relay.endpoint, data=data, method="POST", headers={
            **auth(relay), "Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(req, timeout=10)
    assert answer.value.code == 503 and b"disk full" in answer.value.read()
    assert answer.value.headers["Retry-After"] == "1"
    assert relay.counts.get("failed_requests") == 1


def test_a_client_that_goes_away_mid_body_breaks_nothing(relay):
    host, port = "127.0.0.1", int(relay.endpoint.split(":")[2].split("/")[0])
    with socket.create_connection((host, port)) as sock:
        sock.sendall(
            b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            + f"Authorization: {auth(relay)['authorization']}\r\nContent-Length: 1000\r\n\r\n".encode()
            + BODY[:10]
        )
    # The relay still serves the next request, and stored nothing from the broken one.
    assert otlp.post(relay.endpoint, BODY, auth(relay))[0] == 200
    assert len(relay.got) == 1


def test_keep_alive_serves_several_requests_on_one_connection(relay):
    port = int(relay.endpoint.split(":")[2].split("/")[0])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for _ in range(3):
        conn.request("POST", "/v1/logs", body=gzip.compress(BODY), headers={
            **auth(relay), "Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
        answer = conn.getresponse()
        assert (answer.status, answer.read(), answer.getheader("Content-Type")) == (200, b"", "application/x-protobuf")
    conn.close()
    assert len(relay.got) == 3


def test_close_is_prompt_with_a_stalled_client():
    relay = Relay(lambda r, m: None).start()
    port = int(relay.endpoint.split(":")[2].split("/")[0])
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1/logs HTTP/1.1\r\n")  # and nothing more
    closer = threading.Thread(target=relay.close)
    closer.start()
    closer.join(5)
    assert not closer.is_alive()
    sock.close()


def test_child_env_keeps_otel_variables_out_of_a_relayed_child(relay):
    base = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://x",
            "ZENML_OTEL_LOG_STORE_CONFIG_FILE": "/tmp/c.json", "PATH": "/bin"}
    env = child_env({CONFIG_VARIABLE: relay.config_json()}, base)
    loopback = "127.0.0.1,localhost,::1"  # never through a proxy (test_handover_promise.py)
    assert env == {"PATH": "/bin", CONFIG_VARIABLE: relay.config_json(), "NO_PROXY": loopback,
                   "no_proxy": loopback}  # fmt: skip
    assert json.loads(env[CONFIG_VARIABLE])["endpoint"] == relay.endpoint
    # Not a live relay's configuration (the direct path): the environment is the user's.
    direct = child_env({CONFIG_VARIABLE: '{"endpoint": "http://collector:4318"}'}, base)
    assert direct["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
