//! Hostile input: huge, empty, non-finite, out-of-range and odd values in span and event fields
//! never panic and never lose a record. Property tests over values, plus the extremes by name.
//!
//! Field *names* are compile-time constants in `tracing` (and a callsite holds at most 32
//! fields), so they are not fuzzed; values are.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use common::{by_body, Harness};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use proptest::prelude::*;
use tracing::{info, info_span};
use zenml_otel::testing::ReceivedRecord;

/// One harness for every case: a receiver and layer per case would dominate the run time.
fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(Harness::new)
}

/// Logs through the shared harness and returns the record with a fresh unique body.
fn logged(log: impl FnOnce(&str)) -> ReceivedRecord {
    static CASE: AtomicU64 = AtomicU64::new(0);
    let body = format!("case-{}", CASE.fetch_add(1, Ordering::Relaxed));
    let harness = harness();
    harness.run(|| log(&body));
    harness.handle.force_flush().expect("flush");
    by_body(&harness.receiver.records(), &body).clone()
}

impl std::fmt::Debug for Nest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            0 => f.write_str("leaf"),
            n => f.debug_list().entry(&Nest(n - 1)).finish(),
        }
    }
}

/// A value whose Debug output nests `n` levels deep.
struct Nest(u32);

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_ids_are_exported_exactly(run in ".*", step in ".*", source in ".*") {
        let record = logged(|body| {
            let span = info_span!("s", zenml.pipeline_run_id = %run, zenml.step_id = %step, zenml.source = %source);
            let _e = span.enter();
            info!("{body}");
        });
        prop_assert_eq!(record.resource_attr("zenml.pipeline_run_id"), Some(run));
        prop_assert_eq!(record.resource_attr("zenml.step_id"), Some(step));
        prop_assert_eq!(record.resource_attr("zenml.source"), Some(source));
    }

    #[test]
    fn any_values_are_exported(
        text in ".{0,2000}",
        float in any::<f64>(),
        big in any::<u128>(),
        signed in any::<i128>(),
        flag in any::<bool>(),
        depth in 0u32..200,
    ) {
        let record = logged(|body| {
            info!(text = %text, float, big, signed, flag, deep = ?Nest(depth), "{body}");
        });
        prop_assert_eq!(record.attr_str("text"), Some(text));
        match record.attr("float") {
            Some(Value::DoubleValue(v)) => prop_assert!(v.to_bits() == float.to_bits() || (v.is_nan() && float.is_nan())),
            other => prop_assert!(false, "float: {:?}", other),
        }
        prop_assert_eq!(record.attr_str("big"), Some(big.to_string()));
        prop_assert_eq!(record.attr_str("signed"), Some(signed.to_string()));
        prop_assert_eq!(record.attr("flag"), Some(&Value::BoolValue(flag)));
        prop_assert!(record.attr_str("deep").is_some_and(|d| d.contains("leaf")));
    }
}

#[test]
fn extremes_by_name() {
    let megabyte = "x".repeat(1 << 20);
    let record = logged(|body| {
        let span = info_span!("s", zenml.pipeline_run_id = "", zenml.log.id = %megabyte);
        let _e = span.enter();
        info!(
            huge = %megabyte,
            empty = "",
            nan = f64::NAN,
            inf = f64::INFINITY,
            neg_inf = f64::NEG_INFINITY,
            max = u128::MAX,
            min = i128::MIN,
            bytes = ?b"\xff\xfe\x00",
            escapes = ?"\u{0}\u{1b}[31m\u{fffd}",
            deep = ?Nest(2000),
            "{body}"
        );
    });
    assert_eq!(record.attr_str("huge").map(|s| s.len()), Some(1 << 20));
    assert_eq!(
        record.attr_str("zenml.log.id").map(|s| s.len()),
        Some(1 << 20)
    );
    assert_eq!(
        record.resource_attr("zenml.pipeline_run_id").as_deref(),
        Some("")
    );
    assert_eq!(record.attr_str("empty").as_deref(), Some(""));
    assert!(matches!(record.attr("nan"), Some(Value::DoubleValue(v)) if v.is_nan()));
    assert_eq!(record.attr("inf"), Some(&Value::DoubleValue(f64::INFINITY)));
    assert_eq!(
        record.attr("neg_inf"),
        Some(&Value::DoubleValue(f64::NEG_INFINITY))
    );
    assert_eq!(record.attr_str("max"), Some(u128::MAX.to_string()));
    assert_eq!(record.attr_str("min"), Some(i128::MIN.to_string()));
    assert!(record.attr_str("bytes").is_some());
    assert!(record.attr_str("escapes").is_some());
    assert!(record.attr_str("deep").is_some_and(|d| d.len() > 4000));
}

#[test]
fn non_finite_doubles_are_doubles_in_protobuf_and_strings_in_json() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use zenml_otel::testing::OtlpReceiver;
    use zenml_otel::{OtelLogStoreConfig, Protocol, ZenmlOtelLayer};

    for protocol in common::built([Protocol::HttpProtobuf, Protocol::HttpJson]) {
        let receiver = OtlpReceiver::start().unwrap();
        let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
            endpoint: Some(receiver.endpoint()),
            protocol,
            ..OtelLogStoreConfig::default()
        })
        .unwrap();
        let handle = layer.handle();
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::info!(nan = f64::NAN, neg = f64::NEG_INFINITY, "doubles");
        });
        handle.force_flush().unwrap();
        let records = receiver.records();
        assert_eq!(records.len(), 1);
        let (nan, neg) = (records[0].attr("nan"), records[0].attr("neg"));
        match protocol {
            Protocol::HttpJson => {
                assert_eq!(records[0].attr_str("nan").as_deref(), Some("NaN"));
                assert_eq!(records[0].attr_str("neg").as_deref(), Some("-Infinity"));
            }
            _ => {
                assert!(
                    matches!(nan, Some(Value::DoubleValue(d)) if d.is_nan()),
                    "{nan:?}"
                );
                assert!(
                    matches!(neg, Some(Value::DoubleValue(d)) if *d == f64::NEG_INFINITY),
                    "{neg:?}"
                );
            }
        }
    }
}
