//! Every protocol and compression end to end against the testing receiver, with the run/step
//! resources intact; OTLP/JSON checked against the spec shape; gRPC from inside tokio runtimes.

mod common;

use common::{by_body, WAIT};
use opentelemetry::trace::TracerProvider as _;
use tracing::{info, info_span};
use tracing_subscriber::layer::SubscriberExt;
use zenml_otel::testing::{Encoding, OtlpReceiver};
use zenml_otel::{Compression, LogStoreHandle, OtelLogStoreConfig, Protocol, ZenmlOtelLayer};

fn layer_for(
    receiver: &OtlpReceiver,
    protocol: Protocol,
    compression: Compression,
) -> ZenmlOtelLayer {
    let endpoint = match protocol {
        Protocol::Grpc => receiver.grpc_endpoint(),
        _ => receiver.endpoint(),
    };
    ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(endpoint),
        protocol,
        compression,
        ..OtelLogStoreConfig::default()
    })
    .unwrap()
}

/// Logs one orchestrator and one step line of a run.
fn log_a_run() {
    let run = info_span!("run", zenml.pipeline_run_id = "run-1");
    let _r = run.enter();
    info!(attempt = 1u64, "orchestrator line");
    let step = info_span!("step", zenml.step_id = "step-1", zenml.log.id = "log-1");
    let _s = step.enter();
    info!(name: "step.progress", rows = 3u64, "step line");
}

fn check_run(receiver: &OtlpReceiver, handle: &LogStoreHandle, encoding: Encoding) {
    handle.force_flush().expect("flush");
    let records = receiver.wait_for_records(2, WAIT);
    let orchestrator = by_body(&records, "orchestrator line");
    assert_eq!(
        orchestrator
            .resource_attr("zenml.pipeline_run_id")
            .as_deref(),
        Some("run-1")
    );
    assert_eq!(
        orchestrator.resource_attr("zenml.source").as_deref(),
        Some("orchestrator")
    );
    assert_eq!(orchestrator.resource_attr("zenml.step_id"), None);
    let step = by_body(&records, "step line");
    // `name:` is the record's event_name; tracing's default name ("event file:line") is not.
    assert_eq!(step.record.event_name, "step.progress");
    assert_eq!(orchestrator.record.event_name, "");
    assert_eq!(
        step.resource_attr("zenml.step_id").as_deref(),
        Some("step-1")
    );
    assert_eq!(step.resource_attr("zenml.source").as_deref(), Some("step"));
    assert_eq!(step.attr_str("zenml.log.id").as_deref(), Some("log-1"));
    assert_eq!(step.attr_str("rows").as_deref(), Some("3"));
    assert_eq!(step.record.severity_number, 9);
    assert!(step.record.time_unix_nano > 0);
    let requests = receiver.requests();
    assert!(!requests.is_empty());
    assert!(
        requests.iter().all(|r| r.encoding == encoding),
        "{requests:#?}"
    );
    let stats = handle.stats();
    assert_eq!((stats.exported, stats.failed, stats.dropped), (2, 0, 0));
}

#[test]
fn every_protocol_and_compression_delivers_the_run() {
    for (protocol, encoding) in [
        (Protocol::HttpProtobuf, Encoding::Protobuf),
        (Protocol::HttpJson, Encoding::Json),
        (Protocol::Grpc, Encoding::Grpc),
    ] {
        if !common::built([protocol]).contains(&protocol) {
            continue; // this build lacks its feature; `--all-features` (CI) covers it
        }
        let zstd = cfg!(feature = "zstd").then_some(Compression::Zstd);
        for compression in [Some(Compression::None), Some(Compression::Gzip), zstd]
            .into_iter()
            .flatten()
        {
            let receiver = OtlpReceiver::start().unwrap();
            let layer = layer_for(&receiver, protocol, compression);
            let handle = layer.handle();
            tracing::subscriber::with_default(
                tracing_subscriber::registry().with(layer),
                log_a_run,
            );
            check_run(&receiver, &handle, encoding);
            if protocol != Protocol::Grpc {
                let expected = match compression {
                    Compression::Gzip => Some("gzip"),
                    Compression::Zstd => Some("zstd"),
                    _ => None,
                };
                for request in receiver.requests() {
                    assert_eq!(request.header("content-encoding"), expected, "{protocol:?}");
                }
            }
        }
    }
}

#[test]
#[cfg_attr(not(feature = "http-json"), ignore = "needs the `http-json` feature")]
fn json_follows_the_otlp_spec_shape() {
    let receiver = OtlpReceiver::start().unwrap();
    let layer = layer_for(&receiver, Protocol::HttpJson, Compression::None);
    let handle = layer.handle();
    let tracer = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .build()
        .tracer("test");
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .with(layer);
    tracing::subscriber::with_default(subscriber, log_a_run);
    handle.force_flush().unwrap();
    let request = receiver.requests().into_iter().next().expect("a request");
    assert_eq!(request.header("content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&request.raw).unwrap();
    let text = json.to_string();
    for key in [
        "resourceLogs",
        "scopeLogs",
        "logRecords",
        "timeUnixNano",
        "severityNumber",
    ] {
        assert!(
            text.contains(&format!("\"{key}\"")),
            "{key} missing: {text}"
        );
    }
    for key in [
        "resource_logs",
        "scope_logs",
        "log_records",
        "time_unix_nano",
    ] {
        assert!(
            !text.contains(&format!("\"{key}\"")),
            "{key} is not spec OTLP JSON: {text}"
        );
    }
    let record = &json["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
    let trace_id = record["traceId"].as_str().expect("traceId is a string");
    assert_eq!(trace_id.len(), 32, "hex trace id: {trace_id}");
    assert!(trace_id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(record["spanId"].as_str().map(str::len), Some(16));
}

#[test]
#[cfg_attr(not(feature = "grpc"), ignore = "needs the `grpc` feature")]
fn grpc_works_inside_tokio_runtimes_including_shutdown_and_guard_drop() {
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for runtime in [&multi, &current] {
        for use_guard in [false, true] {
            let receiver = OtlpReceiver::start().unwrap();
            let handle = runtime.block_on(async {
                let layer = layer_for(&receiver, Protocol::Grpc, Compression::None);
                let handle = layer.handle();
                let guard = layer.guard();
                tracing::subscriber::with_default(
                    tracing_subscriber::registry().with(layer),
                    log_a_run,
                );
                if use_guard {
                    drop(guard);
                } else {
                    handle.shutdown().expect("shutdown inside a runtime");
                    drop(guard);
                }
                tokio::task::yield_now().await;
                handle
            });
            assert_eq!(receiver.record_count(), 2);
            assert_eq!(handle.stats().exported, 2);
        }
    }
}
