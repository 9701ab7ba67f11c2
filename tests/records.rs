//! Event → log record mapping: body, severity, timestamp, typed attributes, location, target,
//! trace correlation.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{by_body, Harness};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tracing::{debug, error, info, info_span, trace, warn};
use tracing_subscriber::layer::SubscriberExt;
use zenml_otel::testing::OtlpReceiver;
use zenml_otel::{OtelLogStoreConfig, ZenmlOtelLayer};

#[derive(Debug)]
struct StepFailed;

impl std::fmt::Display for StepFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the step failed")
    }
}

impl std::error::Error for StepFailed {}

#[test]
fn severity_body_and_timestamp() {
    let harness = Harness::new();
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    harness.run(|| {
        trace!("t");
        debug!("d");
        info!("i {}", 1 + 1);
        warn!("w");
        error!("e");
    });
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let records = harness.flushed();
    for (body, number, text) in [
        ("t", 1, "TRACE"),
        ("d", 5, "DEBUG"),
        ("i 2", 9, "INFO"),
        ("w", 13, "WARN"),
        ("e", 17, "ERROR"),
    ] {
        let record = &by_body(&records, body).record;
        assert_eq!(record.severity_number, number, "{body}");
        assert_eq!(record.severity_text, text, "{body}");
        assert!(
            (before..=after).contains(&record.time_unix_nano),
            "{body}: timestamp {} not within the test",
            record.time_unix_nano
        );
        assert!(record.observed_time_unix_nano >= record.time_unix_nano);
    }
}

#[test]
fn messages_of_every_length_prefix_size_arrive_whole() {
    // The message is formatted straight into the body behind a one-byte length, widened for
    // 128 bytes and more: the lengths around each varint boundary, and an empty message.
    let lengths = [0, 1, 127, 128, 129, 16_383, 16_384, 70_000];
    let harness = Harness::new();
    harness.run(|| {
        for len in lengths {
            let text = "m".repeat(len);
            info!(len, "{text}");
        }
    });
    let records = harness.flushed();
    assert_eq!(records.len(), lengths.len());
    for len in lengths {
        let record = records
            .iter()
            .find(|r| {
                r.record.attributes.iter().any(|kv| {
                    kv.key == "len"
                        && kv.value.as_ref().and_then(|v| v.value.as_ref())
                            == Some(&Value::IntValue(len as i64))
                })
            })
            .unwrap_or_else(|| panic!("the record of length {len}"));
        let body = record.record.body.as_ref().and_then(|b| b.value.as_ref());
        assert_eq!(body, Some(&Value::StringValue("m".repeat(len))), "{len}");
    }
}

#[test]
fn fields_become_typed_attributes() {
    let harness = Harness::new();
    harness.run(|| {
        let error = StepFailed;
        info!(
            signed = -3i64,
            small = 7u64,
            huge = u64::MAX,
            wide = 5i128,
            widest = u128::MAX,
            ratio = 0.5f64,
            ok = true,
            name = "resnet",
            debug = ?vec![1, 2],
            display = %"shown",
            error = &error as &(dyn std::error::Error + 'static),
            "typed"
        );
    });
    let records = harness.flushed();
    let record = by_body(&records, "typed");
    let expect = [
        ("signed", Value::IntValue(-3)),
        ("small", Value::IntValue(7)),
        ("huge", Value::StringValue(u64::MAX.to_string())),
        ("wide", Value::IntValue(5)),
        ("widest", Value::StringValue(u128::MAX.to_string())),
        ("ratio", Value::DoubleValue(0.5)),
        ("ok", Value::BoolValue(true)),
        ("name", Value::StringValue("resnet".into())),
        ("debug", Value::StringValue("[1, 2]".into())),
        ("display", Value::StringValue("shown".into())),
        (
            "exception.message",
            Value::StringValue("the step failed".into()),
        ),
    ];
    for (key, value) in expect {
        assert_eq!(record.attr(key), Some(&value), "{key}");
    }
    assert_eq!(
        record.attr("message"),
        None,
        "the message is the body, not an attribute"
    );
}

#[test]
fn code_location_and_target() {
    let harness = Harness::new();
    let line = line!() + 1;
    harness.run(|| info!(target: "my_pipeline::loader", "located"));
    let records = harness.flushed();
    let record = by_body(&records, "located");
    assert_eq!(record.attr_str("code.file.path").as_deref(), Some(file!()));
    assert_eq!(
        record.attr("code.line.number"),
        Some(&Value::IntValue(line.into()))
    );
    assert_eq!(
        record.attr_str("code.namespace").as_deref(),
        Some(module_path!())
    );
    // The target is the instrumentation scope's name, where backends index it.
    assert_eq!(record.scope_name, "my_pipeline::loader");
}

#[test]
fn records_carry_the_trace_context_of_tracing_opentelemetry_spans() {
    let receiver = OtlpReceiver::start().unwrap();
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(receiver.endpoint()),
        ..OtelLogStoreConfig::default()
    })
    .unwrap();
    let handle = layer.handle();
    let tracer = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .build()
        .tracer("test");
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .with(layer);
    let (trace_id, span_id) = tracing::subscriber::with_default(subscriber, || {
        use opentelemetry::trace::TraceContextExt as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        let span = info_span!("step", zenml.step_id = "s");
        let _entered = span.enter();
        info!("correlated");
        let cx = span.context();
        let span_context = cx.span().span_context().clone();
        (span_context.trace_id(), span_context.span_id())
    });
    handle.force_flush().unwrap();
    let records = receiver.records();
    let record = &by_body(&records, "correlated").record;
    assert_eq!(record.trace_id, trace_id.to_bytes().to_vec());
    assert_eq!(record.span_id, span_id.to_bytes().to_vec());
}

#[test]
fn no_deadlock_with_tracing_error_layer() {
    // tracing-error's layer formats span fields and stores them in extensions; a field whose
    // Debug captures a SpanTrace reads extensions while they are being recorded.
    struct CapturesSpanTrace;
    impl std::fmt::Debug for CapturesSpanTrace {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}", tracing_error::SpanTrace::capture())
        }
    }
    let receiver = OtlpReceiver::start().unwrap();
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(receiver.endpoint()),
        ..OtelLogStoreConfig::default()
    })
    .unwrap();
    let handle = layer.handle();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_error::ErrorLayer::default())
        .with(layer);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        tracing::subscriber::with_default(subscriber, || {
            let outer = info_span!("outer", zenml.pipeline_run_id = "r");
            let _o = outer.enter();
            let span =
                info_span!("inner", zenml.log.id = ?CapturesSpanTrace, other = ?CapturesSpanTrace);
            let _i = span.enter();
            span.record("zenml.log.id", tracing::field::debug(CapturesSpanTrace));
            info!(trace = ?CapturesSpanTrace, "no deadlock");
        });
        done_tx.send(()).unwrap();
    });
    done_rx
        .recv_timeout(common::WAIT)
        .expect("deadlock: logging with tracing-error installed did not finish");
    handle.force_flush().unwrap();
    assert_eq!(
        by_body(&receiver.records(), "no deadlock")
            .record
            .severity_number,
        9
    );
}
