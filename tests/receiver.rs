//! The `testing` receiver itself: OTLP/HTTP protobuf and JSON, compression, OTLP/gRPC on the same
//! port, TLS and mutual TLS.

use std::io::Write;
use std::time::{Duration, Instant};

use opentelemetry::logs::{
    AnyValue as OtelValue, LogRecord as _, Logger as _, LoggerProvider as _,
};
use opentelemetry::trace::{SpanId, TraceFlags, TraceId};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use reqwest::blocking::{Client, Response};
use tonic::codec::CompressionEncoding;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use zenml_otel::testing::{Encoding, OtlpReceiver, TlsOptions};

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

fn export_request(bodies: &[&str]) -> ExportLogsServiceRequest {
    let string = |s: &str| AnyValue {
        value: Some(Value::StringValue(s.into())),
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(string("receiver-test")),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: bodies
                    .iter()
                    .map(|body| LogRecord {
                        body: Some(string(body)),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn bodies(receiver: &OtlpReceiver) -> Vec<String> {
    receiver
        .records()
        .iter()
        .map(|r| r.body().unwrap_or_default())
        .collect()
}

fn post(
    client: &Client,
    url: &str,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> Response {
    let mut request = client
        .post(url)
        .header("content-type", content_type)
        .header("authorization", "Bearer t0ken")
        .body(body);
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    request.send().expect("request reaches the receiver")
}

fn content_type(response: &Response) -> &str {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Polls `condition` for up to 5 seconds.
fn eventually(condition: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    condition()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn protobuf_plain_gzip_and_zstd() {
    let receiver = OtlpReceiver::start().unwrap();
    assert!(receiver.endpoint().starts_with("http://127.0.0.1:"));
    let client = Client::new();
    let plain = export_request(&["plain"]).encode_to_vec();

    let response = post(
        &client,
        &receiver.logs_url(),
        "application/x-protobuf",
        None,
        plain.clone(),
    );
    assert_eq!(response.status(), 200);
    assert_eq!(content_type(&response), "application/x-protobuf");

    let gzip_source = export_request(&["gzip"]).encode_to_vec();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(&gzip_source).unwrap();
    let response = post(
        &client,
        &receiver.logs_url(),
        "application/x-protobuf",
        Some("gzip"),
        gzip.finish().unwrap(),
    );
    assert_eq!(response.status(), 200);

    let zstd_source = export_request(&["zstd", "zstd 2"]).encode_to_vec();
    let zstd = zstd::encode_all(zstd_source.as_slice(), 0).unwrap();
    let url = format!("{}/custom/prefix/v1/logs?x=1", receiver.endpoint());
    let response = post(&client, &url, "application/protobuf", Some("zstd"), zstd);
    assert_eq!(response.status(), 200);

    assert_eq!(bodies(&receiver), ["plain", "gzip", "zstd", "zstd 2"]);
    assert_eq!(
        receiver.records()[0]
            .resource_attr("service.name")
            .as_deref(),
        Some("receiver-test")
    );
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|r| r.encoding == Encoding::Protobuf));
    assert_eq!(requests[0].raw, plain);
    assert_eq!(requests[1].raw, gzip_source, "raw is the decompressed body");
    assert_eq!(requests[2].raw, zstd_source);
    assert_eq!(requests[0].path, "/v1/logs");
    assert_eq!(requests[2].path, "/custom/prefix/v1/logs");
    assert_eq!(requests[0].header("Authorization"), Some("Bearer t0ken"));
    assert_eq!(requests[1].header("content-encoding"), Some("gzip"));
    assert_eq!(requests[2].header("content-encoding"), Some("zstd"));
    assert_eq!(receiver.tls_failures(), 0);
}

/// An OTLP/JSON request exactly as the spec shows it: lowerCamelCase keys, hex ids, 64-bit
/// integers as strings (or numbers, which receivers must also accept), enums as numbers.
const SPEC_JSON: &str = r#"{
  "resourceLogs": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
    "scopeLogs": [{
      "scope": {"name": "my.library", "version": "1.0.0"},
      "logRecords": [{
        "timeUnixNano": "1544712660300000000",
        "observedTimeUnixNano": 1544712660300000001,
        "severityNumber": 10,
        "severityText": "Information",
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "body": {"stringValue": "Example log record"},
        "attributes": [
          {"key": "string.attribute", "value": {"stringValue": "some string"}},
          {"key": "int.attribute", "value": {"intValue": "10"}},
          {"key": "int.number", "value": {"intValue": 11}},
          {"key": "double.attribute", "value": {"doubleValue": 637.704}},
          {"key": "boolean.attribute", "value": {"boolValue": true}}
        ]
      }]
    }]
  }]
}"#;

#[test]
fn spec_json_is_decoded() {
    let receiver = OtlpReceiver::start().unwrap();
    let response = post(
        &Client::new(),
        &receiver.logs_url(),
        "application/json",
        None,
        SPEC_JSON.as_bytes().to_vec(),
    );
    assert_eq!(response.status(), 200);
    assert_eq!(content_type(&response), "application/json");
    assert_eq!(response.text().unwrap(), "{}");

    let requests = receiver.requests();
    assert_eq!(requests[0].encoding, Encoding::Json);
    assert_eq!(requests[0].raw, SPEC_JSON.as_bytes());
    let raw: serde_json::Value = serde_json::from_slice(&requests[0].raw).unwrap();
    assert!(raw["resourceLogs"][0]["scopeLogs"][0]["logRecords"].is_array());

    let records = receiver.records();
    let record = &records[0];
    assert_eq!(record.body().as_deref(), Some("Example log record"));
    assert_eq!(record.scope_name, "my.library");
    assert_eq!(
        record.resource_attr("service.name").as_deref(),
        Some("json-svc")
    );
    assert_eq!(record.record.time_unix_nano, 1_544_712_660_300_000_000);
    assert_eq!(
        record.record.observed_time_unix_nano,
        1_544_712_660_300_000_001
    );
    assert_eq!(record.record.severity_number, 10);
    assert_eq!(
        record.record.trace_id,
        0x5b8efff798038103d269b633813fc60c_u128.to_be_bytes()
    );
    assert_eq!(record.record.span_id, 0xeee19b7ec3c1b174_u64.to_be_bytes());
    assert!(matches!(
        record.attr("int.attribute"),
        Some(Value::IntValue(10))
    ));
    assert!(matches!(
        record.attr("int.number"),
        Some(Value::IntValue(11))
    ));
    assert_eq!(
        record.attr_str("double.attribute").as_deref(),
        Some("637.704")
    );
    assert_eq!(
        record.attr_str("boolean.attribute").as_deref(),
        Some("true")
    );
}

#[test]
fn non_spec_json_is_rejected() {
    let receiver = OtlpReceiver::start().unwrap();
    let client = Client::new();
    let reject = |body: String| {
        let response = post(
            &client,
            &receiver.logs_url(),
            "application/json",
            None,
            body.into_bytes(),
        );
        assert_eq!(response.status(), 400);
        assert_eq!(content_type(&response), "text/plain; charset=utf-8");
        response.text().unwrap()
    };

    // The proto field names instead of their JSON names, as a hand-rolled serializer might send.
    let snake = r#"{"resource_logs": [{"scope_logs": [{"log_records": [{"body": {"string_value": "x"}}]}]}]}"#;
    let message = reject(snake.to_owned());
    assert!(
        message.contains("missing field `resourceLogs`"),
        "{message}"
    );

    let nested = SPEC_JSON.replace("\"timeUnixNano\"", "\"time_unix_nano\"");
    let message = reject(nested);
    assert!(message.contains("`time_unix_nano`"), "{message}");
    assert!(message.contains("`timeUnixNano`"), "{message}");

    // Ids base64-encoded (the generic protobuf JSON mapping) instead of hex.
    let base64 = SPEC_JSON.replace(
        "5b8efff798038103d269b633813fc60c",
        "W47/95gDgQPSabYzgT/GDA==",
    );
    assert!(reject(base64).contains("invalid `traceId`"));

    assert!(reject("{}".to_owned()).contains("missing field `resourceLogs`"));
    assert!(reject("{\"resourceLogs\": 5}".to_owned()).contains("invalid OTLP/JSON"));

    assert!(receiver.requests().is_empty());
    assert_eq!(receiver.record_count(), 0);
}

/// What opentelemetry-otlp's own `http-json` exporter sends passes the strict checks.
#[test]
fn opentelemetry_otlp_json_exporter_is_accepted() {
    let receiver = OtlpReceiver::start().unwrap();
    let exporter = opentelemetry_otlp::LogExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(receiver.logs_url())
        .build()
        .unwrap();
    let provider = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
        .with_simple_exporter(exporter)
        .build();
    let logger = provider.logger("json-exporter");
    let mut record = logger.create_log_record();
    record.set_body(OtelValue::from("via the SDK"));
    record.add_attribute("count", 7_i64);
    record.set_trace_context(
        TraceId::from_hex("5b8efff798038103d269b633813fc60c").unwrap(),
        SpanId::from_hex("eee19b7ec3c1b174").unwrap(),
        Some(TraceFlags::SAMPLED),
    );
    logger.emit(record);
    provider.shutdown().unwrap();

    let records = receiver.wait_for_records(1, Duration::from_secs(5));
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].body().as_deref(), Some("via the SDK"));
    assert!(matches!(records[0].attr("count"), Some(Value::IntValue(7))));
    assert_eq!(
        records[0].record.span_id,
        0xeee19b7ec3c1b174_u64.to_be_bytes()
    );
    let request = &receiver.requests()[0];
    assert_eq!(request.encoding, Encoding::Json);
    assert_eq!(request.header("content-type"), Some("application/json"));
    let raw = String::from_utf8(request.raw.clone()).unwrap();
    assert!(
        raw.contains("\"traceId\": \"5b8efff798038103d269b633813fc60c\""),
        "{raw}"
    );
}

async fn grpc_client(endpoint: Endpoint) -> LogsServiceClient<Channel> {
    LogsServiceClient::new(endpoint.connect().await.expect("gRPC connect"))
}

fn grpc_request(bodies: &[&str]) -> tonic::Request<ExportLogsServiceRequest> {
    let mut request = tonic::Request::new(export_request(bodies));
    request
        .metadata_mut()
        .insert("authorization", "Bearer grpc".parse().unwrap());
    request
}

#[test]
fn grpc_export_on_the_same_port() {
    let receiver = OtlpReceiver::start().unwrap();
    assert_eq!(receiver.grpc_endpoint(), receiver.endpoint());
    runtime().block_on(async {
        let endpoint = Endpoint::from_shared(receiver.grpc_endpoint()).unwrap();
        let client = grpc_client(endpoint).await;
        client
            .clone()
            .export(grpc_request(&["grpc plain"]))
            .await
            .unwrap();
        client
            .clone()
            .send_compressed(CompressionEncoding::Gzip)
            .export(grpc_request(&["grpc gzip"]))
            .await
            .unwrap();
        client
            .send_compressed(CompressionEncoding::Zstd)
            .export(grpc_request(&["grpc zstd"]))
            .await
            .unwrap();
    });
    // HTTP on the same port still works alongside.
    let response = post(
        &Client::new(),
        &receiver.logs_url(),
        "application/x-protobuf",
        None,
        export_request(&["http"]).encode_to_vec(),
    );
    assert_eq!(response.status(), 200);

    assert_eq!(
        bodies(&receiver),
        ["grpc plain", "grpc gzip", "grpc zstd", "http"]
    );
    let requests = receiver.requests();
    for request in &requests[..3] {
        assert_eq!(request.encoding, Encoding::Grpc);
        assert_eq!(request.path, EXPORT_PATH);
        assert_eq!(request.header("authorization"), Some("Bearer grpc"));
        assert!(request
            .header("content-type")
            .is_some_and(|v| v.starts_with("application/grpc")));
        assert_eq!(request.raw, request.body.encode_to_vec());
    }
    assert_eq!(requests[1].header("grpc-encoding"), Some("gzip"));
    assert_eq!(requests[2].header("grpc-encoding"), Some("zstd"));
    assert_eq!(requests[3].encoding, Encoding::Protobuf);
}

/// A CA, and the PEM of a leaf certificate and key it issued.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn pem(&self) -> Vec<u8> {
        self.issuer.pem().into_bytes()
    }

    /// (certificate PEM, key PEM) for `name`.
    fn issue(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> (Vec<u8>, Vec<u8>) {
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem().into_bytes(), key.serialize_pem().into_bytes())
    }

    fn identity(&self, name: &str) -> reqwest::Identity {
        let (mut cert, key) = self.issue(name, ExtendedKeyUsagePurpose::ClientAuth);
        cert.extend_from_slice(&key);
        reqwest::Identity::from_pem(&cert).unwrap()
    }
}

fn tls_receiver(server_ca: &Ca, client_ca: Option<&Ca>) -> OtlpReceiver {
    let (cert_chain_pem, key_pem) =
        server_ca.issue("localhost", ExtendedKeyUsagePurpose::ServerAuth);
    OtlpReceiver::start_tls(TlsOptions {
        cert_chain_pem,
        key_pem,
        client_ca_pem: client_ca.map(Ca::pem),
    })
    .unwrap()
}

fn https_client(trusted: &Ca, identity: Option<reqwest::Identity>) -> Client {
    let mut builder = Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&trusted.pem()).unwrap()])
        .timeout(Duration::from_secs(10));
    if let Some(identity) = identity {
        builder = builder.identity(identity);
    }
    builder.build().unwrap()
}

fn try_post(client: &Client, receiver: &OtlpReceiver, body: &str) -> reqwest::Result<Response> {
    client
        .post(receiver.logs_url())
        .header("content-type", "application/x-protobuf")
        .body(export_request(&[body]).encode_to_vec())
        .send()
}

#[test]
fn tls_serves_http_and_grpc() {
    let ca = Ca::new("server CA");
    let receiver = tls_receiver(&ca, None);
    let port = receiver.local_addr().port();
    assert_eq!(receiver.endpoint(), format!("https://localhost:{port}"));
    assert_eq!(
        receiver.logs_url(),
        format!("https://localhost:{port}/v1/logs")
    );
    assert_eq!(receiver.grpc_endpoint(), receiver.endpoint());

    let response = try_post(&https_client(&ca, None), &receiver, "over https").unwrap();
    assert_eq!(response.status(), 200);

    runtime().block_on(async {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca.pem()))
            .domain_name("localhost");
        let endpoint = Endpoint::from_shared(receiver.grpc_endpoint())
            .unwrap()
            .tls_config(tls)
            .unwrap();
        let mut client = grpc_client(endpoint).await;
        client.export(grpc_request(&["over grpcs"])).await.unwrap();
    });
    assert_eq!(bodies(&receiver), ["over https", "over grpcs"]);
    assert_eq!(receiver.requests()[1].encoding, Encoding::Grpc);
    assert_eq!(receiver.tls_failures(), 0);

    // A client that does not trust the server's CA aborts the handshake; the server carries on.
    let stranger = Ca::new("some other CA");
    assert!(try_post(&https_client(&stranger, None), &receiver, "untrusted").is_err());
    assert!(eventually(|| receiver.tls_failures() == 1));
    // So does plain HTTP on the TLS port.
    let plain_url = format!("http://127.0.0.1:{port}/v1/logs");
    assert!(Client::new()
        .post(plain_url)
        .header("content-type", "application/x-protobuf")
        .body(Vec::new())
        .send()
        .is_err());
    assert!(eventually(|| receiver.tls_failures() >= 2));

    let response = try_post(&https_client(&ca, None), &receiver, "still serving").unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(receiver.record_count(), 3);
}

#[test]
fn mtls_requires_a_client_certificate_from_the_client_ca() {
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let receiver = tls_receiver(&server_ca, Some(&client_ca));

    // No client certificate: refused, and counted.
    assert!(try_post(&https_client(&server_ca, None), &receiver, "anonymous").is_err());
    assert!(eventually(|| receiver.tls_failures() == 1));

    // A certificate from a CA the receiver does not trust: refused too.
    let rogue_ca = Ca::new("rogue CA");
    let rogue = https_client(&server_ca, Some(rogue_ca.identity("rogue")));
    assert!(try_post(&rogue, &receiver, "rogue").is_err());
    assert!(eventually(|| receiver.tls_failures() == 2));

    // A certificate issued by the client CA: accepted.
    let trusted = https_client(&server_ca, Some(client_ca.identity("pipeline-runner")));
    let response = try_post(&trusted, &receiver, "authenticated").unwrap();
    assert_eq!(response.status(), 200);

    // gRPC with a client identity works the same way.
    let (cert, key) = client_ca.issue("grpc-runner", ExtendedKeyUsagePurpose::ClientAuth);
    runtime().block_on(async {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(server_ca.pem()))
            .identity(Identity::from_pem(cert, key))
            .domain_name("localhost");
        let endpoint = Endpoint::from_shared(receiver.grpc_endpoint())
            .unwrap()
            .tls_config(tls)
            .unwrap();
        let mut client = grpc_client(endpoint).await;
        client.export(grpc_request(&["grpc mtls"])).await.unwrap();
    });

    assert_eq!(bodies(&receiver), ["authenticated", "grpc mtls"]);
    assert_eq!(receiver.tls_failures(), 2);
}
