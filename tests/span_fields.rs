//! `span_fields`: span fields beyond `zenml.*` copied onto the records inside the span, one key
//! per record (event field over inner span over outer span), values recorded later included.

mod common;

use common::{by_body, Harness};
use tracing::{field, info, info_span};
use zenml_otel::OtelLogStoreConfig;

fn harness(names: &[&str]) -> Harness {
    Harness::with(OtelLogStoreConfig {
        span_fields: names.iter().map(|name| name.to_string()).collect(),
        ..OtelLogStoreConfig::default()
    })
}

/// How many attributes of the record have this key.
fn count(record: &zenml_otel::testing::ReceivedRecord, key: &str) -> usize {
    record
        .record
        .attributes
        .iter()
        .filter(|kv| kv.key == key)
        .count()
}

#[test]
fn the_event_wins_over_the_inner_span_which_wins_over_the_outer() {
    let harness = harness(&["request_id", "user", "attempt"]);
    harness.run(|| {
        let outer = info_span!(
            "request",
            request_id = "outer",
            user = "ada",
            attempt = 1u64
        );
        let _outer = outer.enter();
        let inner = info_span!("retry", request_id = "inner", other = "not allowed");
        let _inner = inner.enter();
        info!(user = "event", "inside");
    });
    let records = harness.flushed();
    let record = by_body(&records, "inside");
    assert_eq!(record.attr_str("request_id").as_deref(), Some("inner"));
    assert_eq!(record.attr_str("user").as_deref(), Some("event"));
    assert_eq!(
        record.attr_str("attempt").as_deref(),
        Some("1"),
        "typed, from the outer span"
    );
    assert!(
        record.attr("other").is_none(),
        "only allowed fields are copied"
    );
    for key in ["request_id", "user", "attempt"] {
        assert_eq!(count(record, key), 1, "{key} once");
    }
}

#[test]
fn values_recorded_later_are_copied_from_then_on() {
    let harness = harness(&["request_id"]);
    harness.run(|| {
        let span = info_span!("request", request_id = field::Empty);
        let _span = span.enter();
        info!("before");
        span.record("request_id", "r-1");
        info!("after");
        span.record("request_id", "r-2");
        info!("again");
    });
    let records = harness.flushed();
    assert!(by_body(&records, "before").attr("request_id").is_none());
    assert_eq!(
        by_body(&records, "after").attr_str("request_id").as_deref(),
        Some("r-1")
    );
    assert_eq!(
        by_body(&records, "again").attr_str("request_id").as_deref(),
        Some("r-2")
    );
}

#[test]
fn off_by_default_and_zenml_fields_are_refused() {
    let harness = Harness::new();
    harness.run(|| {
        let span = info_span!("request", request_id = "r-1");
        let _span = span.enter();
        info!("plain");
    });
    let records = harness.flushed();
    assert!(by_body(&records, "plain").attr("request_id").is_none());

    for bad in ["zenml.step_id", " padded", ""] {
        let error = zenml_otel::ZenmlOtelLayer::new(OtelLogStoreConfig {
            span_fields: vec![bad.to_owned()],
            ..OtelLogStoreConfig::default()
        })
        .unwrap_err();
        assert_eq!(error.field(), Some("span_fields"), "{bad:?}: {error}");
    }
}
