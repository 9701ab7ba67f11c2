//! The exporter's own events never become records, even with everything enabled globally.
//! (Its own test binary: it installs the global default subscriber, which the HTTP client's
//! background threads log to.)

mod common;

use tracing::info;
use tracing_subscriber::layer::SubscriberExt;
use zenml_otel::testing::OtlpReceiver;
use zenml_otel::{OtelLogStoreConfig, ZenmlOtelLayer};

#[test]
fn exporter_events_never_become_records() {
    let receiver = OtlpReceiver::start().unwrap();
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(receiver.endpoint()),
        schedule_delay_millis: 10,
        ..OtelLogStoreConfig::default()
    })
    .unwrap();
    let handle = layer.handle();
    // No filter at all: TRACE from every crate, including hyper, h2, reqwest and opentelemetry.
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer)).unwrap();
    for round in 0..5 {
        info!(round, "user line");
        tracing::trace!(target: "hyper::proto::h1::io", "pretend hyper");
        tracing::debug!(target: "opentelemetry_sdk", "pretend sdk");
        tracing::debug!(target: "reqwest::connect", "pretend reqwest");
        handle.force_flush().unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    handle.force_flush().unwrap();
    let records = receiver.records();
    let scopes: Vec<&str> = records.iter().map(|r| r.scope_name.as_str()).collect();
    assert_eq!(records.len(), 5, "only the user's records: {scopes:?}");
    assert!(
        records
            .iter()
            .all(|r| r.body().as_deref() == Some("user line")),
        "{scopes:?}"
    );
}
