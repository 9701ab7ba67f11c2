use super::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope};
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use prost::Message;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn export_request(bodies: &[&str]) -> ExportLogsServiceRequest {
    let log_records = bodies
        .iter()
        .map(|body| LogRecord {
            body: Some(AnyValue {
                value: Some(Value::StringValue((*body).into())),
            }),
            attributes: vec![
                kv("zenml.step", Value::StringValue("train".into())),
                kv("attempt", Value::IntValue(2)),
            ],
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", Value::StringValue("pipeline".into())),
                    kv("retry", Value::BoolValue(true)),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "zenml-otel".into(),
                    ..Default::default()
                }),
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Sends one raw HTTP/1.1 request and returns (status, response head, raw body).
/// `Content-Type: application/x-protobuf` is added unless `extra` sets a content type.
fn post(
    receiver: &OtlpReceiver,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(receiver.addr).unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        receiver.addr,
        body.len()
    );
    if !extra
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        head.push_str("Content-Type: application/x-protobuf\r\n");
    }
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    read_response(&mut stream)
}

fn read_response(stream: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(&response)));
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, response[split + 4..].to_vec())
}

#[test]
fn decodes_posted_logs() {
    let receiver = OtlpReceiver::start().unwrap();
    assert_eq!(
        receiver.logs_url(),
        format!("{}/v1/logs", receiver.endpoint())
    );

    let body = export_request(&["hello", "world"]).encode_to_vec();
    let (status, head, response) = post(
        &receiver,
        "/api/otel/v1/logs",
        &[("Authorization", "Bearer secret")],
        &body,
    );
    assert_eq!(status, 200, "{head}");
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: application/x-protobuf"));
    ExportLogsServiceResponse::decode(response.as_slice()).unwrap();

    // Records are stored before the 200 goes out, so no waiting is needed.
    let records = receiver.records();
    assert_eq!(records.len(), 2);
    assert_eq!(receiver.record_count(), 2);
    let first = &records[0];
    assert_eq!(first.body().as_deref(), Some("hello"));
    assert_eq!(records[1].body().as_deref(), Some("world"));
    assert_eq!(first.scope_name, "zenml-otel");
    assert_eq!(
        first.resource_attr("service.name").as_deref(),
        Some("pipeline")
    );
    assert_eq!(first.resource_attr("retry").as_deref(), Some("true"));
    assert_eq!(first.resource_attr("missing"), None);
    assert_eq!(first.attr_str("zenml.step").as_deref(), Some("train"));
    assert_eq!(first.attr_str("attempt").as_deref(), Some("2"));
    assert!(matches!(first.attr("attempt"), Some(Value::IntValue(2))));

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/api/otel/v1/logs");
    assert_eq!(requests[0].header("AUTHORIZATION"), Some("Bearer secret"));
    assert!(requests[0]
        .headers
        .iter()
        .any(|(k, _)| k == "authorization"));
}

#[test]
fn rejects_bad_bodies_and_paths() {
    let receiver = OtlpReceiver::start().unwrap();

    let (status, _, body) = post(&receiver, "/v1/logs", &[], b"\xff\xff\xff\xff");
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("invalid ExportLogsServiceRequest"));

    let valid = export_request(&["x"]).encode_to_vec();
    assert_eq!(post(&receiver, "/v1/traces", &[], &valid).0, 404);
    assert_eq!(
        post(&receiver, "/v1/logs", &[("Content-Encoding", "br")], &valid).0,
        415
    );

    assert!(receiver.requests().is_empty());
    assert_eq!(receiver.record_count(), 0);
}

#[test]
fn wait_for_records_times_out_with_what_arrived() {
    let receiver = OtlpReceiver::start().unwrap();
    post(
        &receiver,
        "/v1/logs",
        &[],
        &export_request(&["only"]).encode_to_vec(),
    );

    let timeout = Duration::from_millis(200);
    let started = Instant::now();
    let records = receiver.wait_for_records(2, timeout);
    assert!(started.elapsed() >= timeout);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].body().as_deref(), Some("only"));

    // Already satisfied: returns at once.
    let started = Instant::now();
    assert_eq!(
        receiver.wait_for_records(1, Duration::from_secs(10)).len(),
        1
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn wait_for_records_wakes_on_arrival() {
    let receiver = OtlpReceiver::start().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            post(
                &receiver,
                "/v1/logs",
                &[],
                &export_request(&["late"]).encode_to_vec(),
            );
        });
        let records = receiver.wait_for_records(1, Duration::from_secs(10));
        assert_eq!(records.len(), 1);
    });
}

#[test]
fn decodes_json_and_compressed_bodies() {
    let receiver = OtlpReceiver::start().unwrap();
    let json = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"from json"}}]}]}]}"#;
    let (status, head, body) = post(
        &receiver,
        "/v1/logs",
        &[("Content-Type", "application/json; charset=utf-8")],
        json,
    );
    assert_eq!(status, 200, "{head}");
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: application/json"));
    assert_eq!(body, b"{}");

    let protobuf = export_request(&["zstd"]).encode_to_vec();
    let zstd = zstd::encode_all(protobuf.as_slice(), 3).unwrap();
    let (status, head, _) = post(
        &receiver,
        "/v1/logs",
        &[("Content-Encoding", "zstd")],
        &zstd,
    );
    assert_eq!(status, 200, "{head}");

    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(&protobuf).unwrap();
    let gzip = gzip.finish().unwrap();
    let (status, head, _) = post(
        &receiver,
        "/v1/logs",
        &[("Content-Encoding", "GZIP")],
        &gzip,
    );
    assert_eq!(status, 200, "{head}");

    let requests = receiver.requests();
    assert_eq!(
        requests.iter().map(|r| r.encoding).collect::<Vec<_>>(),
        [Encoding::Json, Encoding::Protobuf, Encoding::Protobuf]
    );
    assert_eq!(requests[0].raw, json);
    assert_eq!(requests[1].raw, protobuf);
    assert_eq!(requests[2].raw, protobuf);
    let bodies: Vec<_> = receiver
        .records()
        .iter()
        .map(|r| r.body().unwrap())
        .collect();
    assert_eq!(bodies, ["from json", "zstd", "zstd"]);
}

#[test]
fn rejects_bad_content_types_and_encodings() {
    let receiver = OtlpReceiver::start().unwrap();
    let valid = export_request(&["x"]).encode_to_vec();

    let (status, _, body) = post(
        &receiver,
        "/v1/logs",
        &[("Content-Type", "text/plain")],
        &valid,
    );
    assert_eq!(status, 415);
    assert!(String::from_utf8_lossy(&body).contains("unsupported content-type"));

    let (status, _, body) = post(
        &receiver,
        "/v1/logs",
        &[("Content-Encoding", "gzip")],
        &valid,
    );
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("invalid gzip body"));

    let (status, _, body) = post(
        &receiver,
        "/v1/logs",
        &[("Content-Encoding", "zstd")],
        &valid,
    );
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("invalid zstd body"));

    let (status, _, body) = post(
        &receiver,
        "/v1/logs",
        &[("Content-Type", "application/json")],
        br#"{"resource_logs":[]}"#,
    );
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("missing field `resourceLogs`"));

    let mut stream = TcpStream::connect(receiver.addr).unwrap();
    stream
        .write_all(b"GET /v1/logs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).0, 405);

    assert!(receiver.requests().is_empty());
}

#[test]
fn survives_garbage_and_dropped_connections() {
    let receiver = OtlpReceiver::start().unwrap();
    {
        let mut stream = TcpStream::connect(receiver.addr).unwrap();
        stream
            .write_all(b"\x16\x03\x01\x00\xffnot http at all\r\n\r\n")
            .unwrap();
        let mut sink = Vec::new();
        // hyper answers 400 or just closes; either way the connection ends.
        let _ = stream.read_to_end(&mut sink);
    }
    {
        // Half a request, then hang up.
        let mut stream = TcpStream::connect(receiver.addr).unwrap();
        stream
            .write_all(b"POST /v1/logs HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc")
            .unwrap();
    }
    let (status, head, _) = post(
        &receiver,
        "/v1/logs",
        &[],
        &export_request(&["still here"]).encode_to_vec(),
    );
    assert_eq!(status, 200, "{head}");
    assert_eq!(receiver.record_count(), 1);
    assert_eq!(receiver.tls_failures(), 0);
}

#[test]
fn drop_stops_promptly_with_open_connections() {
    let receiver = OtlpReceiver::start().unwrap();
    let addr = receiver.addr;
    // An idle keep-alive connection and a half-sent request must not hold up shutdown.
    let _idle = TcpStream::connect(addr).unwrap();
    let mut partial = TcpStream::connect(addr).unwrap();
    partial
        .write_all(b"POST /v1/logs HTTP/1.1\r\nContent-Length: 100\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));

    let started = Instant::now();
    drop(receiver);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The server side of the open connection is gone.
    partial
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert!(matches!(partial.read(&mut buf), Ok(0) | Err(_)));
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn start_tls_rejects_unusable_pem() {
    let error = OtlpReceiver::start_tls(TlsOptions {
        cert_chain_pem: b"not a certificate".to_vec(),
        key_pem: b"not a key".to_vec(),
        client_ca_pem: None,
    })
    .unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    assert!(error.to_string().contains("cert_chain_pem"), "{error}");
}

#[test]
fn debug_output_redacts_the_key() {
    let options = TlsOptions {
        cert_chain_pem: b"cert".to_vec(),
        key_pem: b"SECRET".to_vec(),
        client_ca_pem: Some(b"ca".to_vec()),
    };
    let debug = format!("{options:?}");
    assert!(!debug.contains("SECRET"), "{debug}");
    let receiver = OtlpReceiver::start().unwrap();
    assert_eq!(receiver.grpc_endpoint(), receiver.endpoint());
    assert!(format!("{receiver:?}").contains(&receiver.endpoint()));
}

#[test]
fn starts_and_stops_inside_an_async_context() {
    // Tests using the receiver may run on a runtime of their own.
    let outer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    outer.block_on(async {
        let receiver = OtlpReceiver::start().unwrap();
        let addr = receiver.addr;
        drop(receiver);
        assert!(TcpStream::connect(addr).is_err());
    });
}

/// Reads from `stream` until the server closes it; `true` if no response byte came back.
fn closed_without_answer(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => got.is_empty(),
        // A reset counts as closed; a timeout means the connection is still open.
        Err(e) => e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::TimedOut,
    }
}

fn logs(receiver: &OtlpReceiver, body: &str) -> (u16, String, Vec<u8>) {
    post(
        receiver,
        "/v1/logs",
        &[],
        &export_request(&[body]).encode_to_vec(),
    )
}

#[test]
fn status_fault_answers_with_retry_after_and_stores_nothing() {
    let receiver = OtlpReceiver::start().unwrap();
    receiver.fail_next(
        1,
        Fault::Status {
            code: 503,
            retry_after: Some(7),
        },
    );
    receiver.fail_next(
        1,
        Fault::Status {
            code: 500,
            retry_after: None,
        },
    );
    let (status, head, body) = logs(&receiver, "throttled");
    assert_eq!(status, 503, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 7"),
        "{head}"
    );
    assert!(!body.is_empty(), "a google.rpc.Status body");
    let (status, head, _) = post(
        &receiver,
        "/v1/logs",
        &[("Content-Type", "application/json")],
        br#"{"resourceLogs":[]}"#,
    );
    assert_eq!(status, 500, "{head}");
    assert!(!head.to_ascii_lowercase().contains("retry-after"), "{head}");
    assert!(head.contains("application/json"), "{head}");
    assert_eq!(receiver.record_count(), 0);
    assert!(receiver.requests().is_empty());

    let (status, _, _) = logs(&receiver, "served");
    assert_eq!(status, 200, "fail_next lasts n requests");
    assert_eq!(receiver.record_count(), 1);
    assert_eq!(receiver.attempts(), 3);
}

#[test]
fn set_fault_applies_to_every_request_until_cleared() {
    let receiver = OtlpReceiver::start().unwrap();
    let teapot = Fault::Status {
        code: 418,
        retry_after: None,
    };
    receiver.set_fault(Some(teapot.clone()));
    assert!(format!("{receiver:?}").contains("418"), "{receiver:?}");
    for _ in 0..3 {
        assert_eq!(logs(&receiver, "x").0, 418);
    }
    // set_fault replaces what fail_next queued, too.
    receiver.fail_next(5, teapot);
    receiver.set_fault(None);
    assert_eq!(logs(&receiver, "ok").0, 200);
    assert_eq!((receiver.attempts(), receiver.record_count()), (4, 1));
}

#[test]
fn partial_success_stores_and_answers_in_the_request_encoding() {
    let receiver = OtlpReceiver::start().unwrap();
    let fault = Fault::PartialSuccess {
        rejected: 2,
        message: "too old".into(),
    };
    receiver.fail_next(2, fault);
    let (status, _, body) = logs(&receiver, "partly");
    assert_eq!(status, 200);
    let response = ExportLogsServiceResponse::decode(body.as_slice()).unwrap();
    let partial = response.partial_success.unwrap();
    assert_eq!(
        (partial.rejected_log_records, partial.error_message.as_str()),
        (2, "too old")
    );

    let (status, head, body) = post(
        &receiver,
        "/v1/logs",
        &[("Content-Type", "application/json")],
        br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"j"}}]}]}]}"#,
    );
    assert_eq!(status, 200, "{head}");
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(value["partialSuccess"]["rejectedLogRecords"], "2");
    assert_eq!(value["partialSuccess"]["errorMessage"], "too old");
    assert_eq!(receiver.record_count(), 2, "partial successes are stored");
}

#[test]
fn refuse_closes_the_port_and_open_connections_then_listens_again() {
    let receiver = OtlpReceiver::start().unwrap();
    let mut idle = TcpStream::connect(receiver.addr).unwrap();
    receiver.set_fault(Some(Fault::Refuse));
    let error = TcpStream::connect(receiver.addr).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused, "{error}");
    assert!(closed_without_answer(&mut idle));
    // Setting it again keeps refusing.
    receiver.set_fault(Some(Fault::Refuse));
    assert!(TcpStream::connect(receiver.addr).is_err());
    receiver.set_fault(None);
    assert_eq!(logs(&receiver, "back").0, 200);
    assert_eq!(receiver.local_addr(), receiver.addr);
    assert_eq!((receiver.attempts(), receiver.record_count()), (1, 1));
}

#[test]
fn fail_next_refuse_cuts_the_connection_without_an_answer() {
    let receiver = OtlpReceiver::start().unwrap();
    receiver.fail_next(1, Fault::Refuse);
    let body = export_request(&["cut"]).encode_to_vec();
    let mut stream = TcpStream::connect(receiver.addr).unwrap();
    let head = format!(
        "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body).unwrap();
    assert!(closed_without_answer(&mut stream));
    assert_eq!(logs(&receiver, "next").0, 200);
    assert_eq!((receiver.attempts(), receiver.record_count()), (2, 1));
}

#[test]
fn blackhole_holds_the_request_until_the_fault_changes() {
    let receiver = OtlpReceiver::start().unwrap();
    receiver.fail_next(1, Fault::Blackhole);
    let body = export_request(&["into the void"]).encode_to_vec();
    let mut stream = TcpStream::connect(receiver.addr).unwrap();
    let head = format!(
        "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    let error = stream.read(&mut buf).expect_err("no answer while held");
    assert!(
        matches!(
            error.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
        "{error}"
    );
    // Other connections are served meanwhile.
    assert_eq!(logs(&receiver, "served").0, 200);
    receiver.set_fault(None);
    assert!(closed_without_answer(&mut stream));
    assert_eq!(receiver.attempts(), 2);
    assert_eq!(receiver.record_count(), 1, "the held request is not stored");
}

#[test]
fn delay_answers_late_and_stores() {
    let receiver = OtlpReceiver::start().unwrap();
    receiver.fail_next(1, Fault::Delay(Duration::from_millis(300)));
    let started = Instant::now();
    assert_eq!(logs(&receiver, "late").0, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(receiver.record_count(), 1);
}

#[test]
fn dropping_the_receiver_releases_black_holed_requests() {
    let receiver = OtlpReceiver::start().unwrap();
    receiver.set_fault(Some(Fault::Blackhole));
    let mut stream = TcpStream::connect(receiver.addr).unwrap();
    stream
        .write_all(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while receiver.attempts() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(receiver.attempts(), 1);
    let started = Instant::now();
    drop(receiver);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(closed_without_answer(&mut stream));
}

fn metrics_request(
    value: i64,
) -> opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest {
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, number_data_point, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    };
    opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", Value::StringValue("svc".into()))],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "otel.sdk.log.created".into(),
                    unit: "{log_record}".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: vec![NumberDataPoint {
                            attributes: vec![kv("error.type", Value::StringValue("x".into()))],
                            value: Some(number_data_point::Value::AsInt(value)),
                            ..Default::default()
                        }],
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn metrics_are_taken_apart_from_logs_with_their_own_fault() {
    let receiver = OtlpReceiver::start().unwrap();
    let protobuf = metrics_request(7).encode_to_vec();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(&protobuf).unwrap();
    let gzip = gzip.finish().unwrap();
    let (status, head, _) = post(
        &receiver,
        "/v1/metrics",
        &[("Content-Encoding", "gzip")],
        &gzip,
    );
    assert_eq!(status, 200, "{head}");
    let json = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","sum":{"dataPoints":[{"asInt":"3"}],"aggregationTemporality":2,"isMonotonic":true}}]}]}]}"#;
    let (status, head, body) = post(
        &receiver,
        "/prefix/v1/metrics",
        &[("Content-Type", "application/json")],
        json,
    );
    assert_eq!((status, body.as_slice()), (200, &b"{}"[..]), "{head}");
    let (status, _, _) = post(&receiver, "/v1/metrics", &[], b"\xff\xff");
    assert_eq!(status, 400, "a body that is no metrics request");
    let metrics = receiver.metrics();
    assert_eq!(metrics.len(), 2);
    assert_eq!(
        metrics[0].sum("otel.sdk.log.created", &[("error.type", "x")]),
        Some(7.0)
    );
    assert_eq!(
        metrics[0].points()[0]
            .resource_attr("service.name")
            .as_deref(),
        Some("svc")
    );
    assert_eq!(metrics[1].encoding, Encoding::Json);
    assert_eq!(metrics[1].sum("m", &[]), Some(3.0));
    assert_eq!(receiver.record_count(), 0, "metrics are not logs");
    assert_eq!(receiver.attempts(), 0, "nor counted as their requests");
    assert_eq!(receiver.metrics_attempts(), 3);

    // Each side's fault is its own.
    receiver.set_metrics_fault(Some(Fault::Status {
        code: 503,
        retry_after: None,
    }));
    receiver.fail_next(
        1,
        Fault::Status {
            code: 500,
            retry_after: None,
        },
    );
    assert_eq!(post(&receiver, "/v1/metrics", &[], &protobuf).0, 503);
    let (status, _, _) = post(
        &receiver,
        "/v1/logs",
        &[],
        &export_request(&["x"]).encode_to_vec(),
    );
    assert_eq!(status, 500, "the logs' fault was left for the logs");
    let (status, _, _) = post(
        &receiver,
        "/v1/logs",
        &[],
        &export_request(&["y"]).encode_to_vec(),
    );
    assert_eq!(status, 200);
    receiver.set_metrics_fault(None);
    assert_eq!(post(&receiver, "/v1/metrics", &[], &protobuf).0, 200);
    assert_eq!(receiver.metrics().len(), 3);
}
