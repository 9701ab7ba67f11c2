"""A small OTLP logs protobuf *encoder* for the tests (the module under test only decodes), and
an OTLP/HTTP receiver standing in for an `otel` log store's collector."""

import gzip
import json
import os
import struct
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple


def varint(value: int) -> bytes:
    value &= 0xFFFFFFFFFFFFFFFF  # negative ints: ten-byte two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def length(number: int, data: bytes) -> bytes:
    return key(number, 2) + varint(len(data)) + data


def string(number: int, text: str) -> bytes:
    return length(number, text.encode())


def fixed64(number: int, value: int) -> bytes:
    return key(number, 1) + struct.pack("<Q", value)


def fixed32(number: int, value: int) -> bytes:
    return key(number, 5) + struct.pack("<I", value)


def uint(number: int, value: int) -> bytes:
    return key(number, 0) + varint(value)


def any_value(value: Any) -> bytes:
    """AnyValue; bytes as `{"bytes": hex}` like the decoder's output, None empty."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return uint(2, int(value))
    if isinstance(value, int):
        return uint(3, value)
    if isinstance(value, float):
        return key(4, 1) + struct.pack("<d", value)
    if isinstance(value, str):
        return string(1, value)
    if isinstance(value, list):
        return length(5, b"".join(length(1, any_value(v)) for v in value))
    if isinstance(value, dict) and set(value) == {"bytes"}:
        return length(7, bytes.fromhex(value["bytes"]))
    if isinstance(value, dict):
        return length(6, key_values(1, value))
    raise TypeError(value)


def key_values(number: int, pairs: Dict[str, Any]) -> bytes:
    return b"".join(
        length(number, string(1, k) + length(2, any_value(v))) for k, v in pairs.items()
    )


def log_record(
    body: Any = None,
    severity_number: int = 0,
    severity_text: str = "",
    time_unix_nano: int = 0,
    observed_time_unix_nano: int = 0,
    attributes: Optional[Dict[str, Any]] = None,
    trace_id: bytes = b"",
    span_id: bytes = b"",
    flags: int = 0,
    event_name: str = "",
    dropped_attributes_count: int = 0,
) -> bytes:
    out = b""
    if time_unix_nano:
        out += fixed64(1, time_unix_nano)
    if severity_number:
        out += uint(2, severity_number)
    if severity_text:
        out += string(3, severity_text)
    if body is not None:
        out += length(5, any_value(body))
    out += key_values(6, attributes or {})
    if dropped_attributes_count:
        out += uint(7, dropped_attributes_count)
    if flags:
        out += fixed32(8, flags)
    if trace_id:
        out += length(9, trace_id)
    if span_id:
        out += length(10, span_id)
    if observed_time_unix_nano:
        out += fixed64(11, observed_time_unix_nano)
    if event_name:
        out += string(12, event_name)
    return out


def request(
    resource: Dict[str, Any], scope: Tuple[str, str], records: List[bytes]
) -> bytes:
    """An ExportLogsServiceRequest with one resource and one scope."""
    scope_msg = string(1, scope[0]) + string(2, scope[1])
    scope_logs = length(1, scope_msg) + b"".join(length(2, r) for r in records)
    resource_logs = length(1, key_values(1, resource)) + length(2, scope_logs)
    return length(1, resource_logs)


def request_scopes(resource: Dict[str, Any], scopes: List[Tuple[str, List[bytes]]]) -> bytes:
    """An ExportLogsServiceRequest with one resource and a ScopeLogs per (scope name, records)."""
    scope_logs = b"".join(
        length(2, length(1, string(1, name)) + b"".join(length(2, r) for r in records))
        for name, records in scopes
    )
    return length(1, length(1, key_values(1, resource)) + scope_logs)


def post(
    endpoint: str,
    body: bytes,
    headers: Dict[str, str],
    gzipped: bool = True,
    content_type: str = "application/x-protobuf",
) -> Tuple[int, bytes]:
    """POSTs `body`; the status and answer, also for error statuses."""
    data = gzip.compress(body) if gzipped else body
    all_headers = {"Content-Type": content_type, **headers}
    if gzipped:
        all_headers["Content-Encoding"] = "gzip"
    req = urllib.request.Request(endpoint, data=data, headers=all_headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def handed_over() -> Dict[str, Any]:
    """The configuration the step handed this process, from either variable (as the crate
    reads it, since before handover 2)."""
    path = os.environ.get("ZENML_OTEL_LOG_STORE_CONFIG_FILE")
    if path is not None:
        with open(path, encoding="utf-8") as file:
            from_file: Dict[str, Any] = json.load(file)
        return from_file
    config: Dict[str, Any] = json.loads(os.environ["ZENML_OTEL_LOG_STORE_CONFIG"])
    return config


class LocalServer:
    """A threaded HTTP server on a free loopback port with `handler`, serving inside `with`."""

    def __init__(self, handler):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class Collector(LocalServer):
    """An OTLP/HTTP logs receiver: keeps each request; answers from `statuses`, then 200."""

    def __init__(self, statuses=()):
        self.requests: List[Tuple[str, Any, bytes, int]] = []
        self.statuses = list(statuses)
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = collector.statuses.pop(0) if collector.statuses else 200
                collector.requests.append((self.path, self.headers, body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        super().__init__(Handler)

    def decoded(self):
        """Each taken request, decoded."""
        from zenml_otel import decode_export_request

        return [decode_export_request(body) for body in self.bodies("application/x-protobuf")]

    def bodies(self, content_type):
        """The taken requests' bodies of one Content-Type (ZenML's own exporter posts JSON),
        unpacked."""
        out = []
        for _, headers, body, status in self.requests:
            if status == 200 and headers.get("Content-Type", "").startswith(content_type):
                out.append(gzip.decompress(body) if headers.get("Content-Encoding") == "gzip" else body)
        return out

    def strings(self):
        """Every string in the JSON requests (ZenML's exporter: the step's Python records)."""
        found = []

        def walk(value):
            if isinstance(value, dict):
                value = list(value.values())
            if isinstance(value, list):
                for item in value:
                    walk(item)
            elif isinstance(value, str):
                found.append(value)

        for body in self.bodies("application/json"):
            walk(json.loads(body))
        return found
