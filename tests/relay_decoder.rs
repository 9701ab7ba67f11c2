//! The relay's OTLP decoder (`decode_export_request` in python/src/zenml_otel/_otlp.py: pure Python, as
//! ZenML's base install has no protobuf package) reads the requests this crate sends exactly as
//! prost does. Generated events of every field type — negative and large integers, floats,
//! bools, long and non-ASCII strings, `Debug` values, event names, every level, many runs, in
//! several requests, plain and gzip — are exported to a capturing server; each captured body
//! goes through `python3 -m zenml_otel decode` and through prost, and both readings must
//! be equal, record for record.
#![cfg(feature = "http-proto")]

use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value as Any, AnyValue, KeyValue};
use proptest::prelude::*;
use prost::Message as _;
use serde_json::{json, Map, Value};
use tracing_subscriber::layer::SubscriberExt;
use zenml_otel::{Compression, OtelLogStoreConfig, ZenmlOtelLayer};

/// The bodies a capturing OTLP/HTTP server was sent, as they came (compressed or not).
type Bodies = Arc<Mutex<Vec<Vec<u8>>>>;

fn capture() -> (String, Bodies, Arc<tiny_http::Server>) {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind"));
    let endpoint = format!("http://{}/v1/logs", server.server_addr());
    let bodies = Bodies::default();
    let (serving, kept) = (Arc::clone(&server), Arc::clone(&bodies));
    std::thread::spawn(move || {
        for mut request in serving.incoming_requests() {
            let mut body = Vec::new();
            let _ = request.as_reader().read_to_end(&mut body);
            kept.lock().unwrap().push(body);
            let _ = request.respond(tiny_http::Response::empty(200));
        }
    });
    (endpoint, bodies, server)
}

/// One generated event: which shape, and its values.
#[derive(Debug, Clone)]
struct Event {
    shape: u8,
    run: u8,
    int: i64,
    big: u64,
    float: f64,
    flag: bool,
    text: String,
}

fn events() -> impl Strategy<Value = Vec<Event>> {
    let text = prop_oneof![
        Just(String::new()),
        "[a-z ]{0,20}",
        "\\PC{0,40}",
        // Longer than one- and two-byte length prefixes.
        "[a-zé✓]{100,300}",
        Just("x".repeat(20_000)),
    ];
    let float = prop_oneof![
        Just(0.0),
        Just(-0.0),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        -1e12f64..1e12,
    ];
    let event = (
        0u8..6,
        0u8..12,
        any::<i64>(),
        any::<u64>(),
        float,
        any::<bool>(),
        text,
    )
        .prop_map(|(shape, run, int, big, float, flag, text)| Event {
            shape,
            run,
            int,
            big,
            float,
            flag,
            text,
        });
    prop::collection::vec(event, 1..60)
}

fn log(event: &Event) {
    let run = format!("00000000-0000-4000-8000-0000000000{:02x}", event.run);
    let span = tracing::info_span!("run", zenml.pipeline_run_id = %run, zenml.step_id = %run);
    let _run = span.enter();
    let Event {
        int,
        big,
        float,
        flag,
        text,
        ..
    } = event;
    match event.shape {
        0 => tracing::info!(int, big, float, flag, text = text.as_str(), "{text}"),
        1 => tracing::warn!(name: "model.trained", items = ?[text, text], int, "trained"),
        2 => tracing::error!(target: "trainer::io", flag, "{text} failed: {int}"),
        3 => tracing::debug!(float, neg = -int.saturating_abs(), "debug {big}"),
        4 => tracing::trace!(text = %text, "traced"),
        _ => tracing::info!(message = text.as_str(), huge = u128::MAX),
    }
}

/// The canonical reading of the Python decoder, from prost's.
fn canonical(request: &ExportLogsServiceRequest) -> Value {
    let resources = request.resource_logs.iter().map(|resource_logs| {
        let scopes = resource_logs.scope_logs.iter().map(|scope_logs| {
            let scope = scope_logs.scope.clone().unwrap_or_default();
            let records = scope_logs.log_records.iter().map(|r| {
                json!({
                    "time_unix_nano": r.time_unix_nano,
                    "observed_time_unix_nano": r.observed_time_unix_nano,
                    "severity_number": r.severity_number,
                    "severity_text": r.severity_text,
                    "body": r.body.as_ref().map_or(Value::Null, value),
                    "attributes": attributes(&r.attributes),
                    "event_name": r.event_name,
                    "trace_id": hex(&r.trace_id),
                    "span_id": hex(&r.span_id),
                    "flags": r.flags,
                    "dropped_attributes_count": r.dropped_attributes_count,
                })
            });
            json!({"name": scope.name, "version": scope.version, "records": records.collect::<Vec<_>>()})
        });
        let resource = resource_logs.resource.clone().unwrap_or_default();
        json!({"resource": attributes(&resource.attributes), "scopes": scopes.collect::<Vec<_>>()})
    });
    Value::Array(resources.collect())
}

fn attributes(pairs: &[KeyValue]) -> Value {
    let map: Map<String, Value> = pairs
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, value)))
        .collect();
    Value::Object(map)
}

fn value(any: &AnyValue) -> Value {
    match &any.value {
        None => Value::Null,
        Some(Any::StringValue(s)) => json!(s),
        Some(Any::BoolValue(b)) => json!(b),
        Some(Any::IntValue(i)) => json!(i),
        Some(Any::DoubleValue(d)) => json!(d),
        Some(Any::ArrayValue(array)) => Value::Array(array.values.iter().map(value).collect()),
        Some(Any::KvlistValue(list)) => attributes(&list.values),
        Some(Any::BytesValue(bytes)) => json!({"bytes": hex(bytes)}),
        // Profiles' string tables; never in a logs request.
        Some(Any::StringValueStrindex(index)) => panic!("a string table index {index} in logs"),
    }
}

/// Each record with its resource and scope, to show one difference at a time.
fn flattened(reading: &Value) -> Vec<Value> {
    let mut flat = Vec::new();
    for resource in reading.as_array().into_iter().flatten() {
        for scope in resource["scopes"].as_array().into_iter().flatten() {
            for record in scope["records"].as_array().into_iter().flatten() {
                flat.push(json!([
                    resource["resource"],
                    scope["name"],
                    scope["version"],
                    record
                ]));
            }
        }
    }
    flat
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn python_reading(body: &[u8]) -> Value {
    let package = concat!(env!("CARGO_MANIFEST_DIR"), "/python/src");
    let mut child = Command::new("python3")
        .args(["-m", "zenml_otel", "decode"])
        .env("PYTHONPATH", package)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (on every machine this crate is tested on) runs the decoder");
    let mut stdin = child.stdin.take().unwrap();
    let body = body.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        output.status.success(),
        "the decoder refused the crate's request: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the decoder prints JSON")
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut plain)
        .expect("gzip body");
    plain
}

fn both_readings_agree(events: &[Event], compression: Compression) {
    let (endpoint, bodies, server) = capture();
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(endpoint),
        compression,
        max_export_batch_size: 16,
        schedule_delay_millis: 600_000,
        ..OtelLogStoreConfig::default()
    })
    .unwrap();
    let handle = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        events.iter().for_each(log)
    });
    handle.shutdown().unwrap();
    server.unblock();
    let bodies = std::mem::take(&mut *bodies.lock().unwrap());
    let mut records = 0;
    for body in &bodies {
        let plain = match compression {
            Compression::Gzip => gunzip(body),
            _ => body.clone(),
        };
        let request = ExportLogsServiceRequest::decode(&plain[..]).expect("prost reads it");
        // Through JSON text and back, as the decoder's reading comes: serde_json's parser
        // may round a float's last digit, the same way on both sides.
        let expected: Value = serde_json::from_str(&canonical(&request).to_string()).unwrap();
        // The relay's own path: the body as it came, gzip included.
        let read = python_reading(body);
        for (python, prost) in flattened(&read).iter().zip(flattened(&expected)) {
            assert_eq!(python, &prost, "{compression:?}");
        }
        assert_eq!(read, expected, "{compression:?}: the same records, no more");
        records += request
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum::<usize>();
    }
    assert_eq!(records, events.len(), "every event was compared");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn the_python_decoder_reads_the_crates_requests_as_prost_does(events in events()) {
        both_readings_agree(&events, Compression::None);
        both_readings_agree(&events, Compression::Gzip);
    }
}
