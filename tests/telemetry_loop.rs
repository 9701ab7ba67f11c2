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
    // No filter at all: TRACE from every crate, including ureq, hyper, h2 and opentelemetry.
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer)).unwrap();
    // ureq and hyper-util log through the `log` crate; bridged, their target is "log".
    tracing_log::LogTracer::init().unwrap();
    for round in 0..5 {
        info!(round, "user line");
        tracing::trace!(target: "hyper::proto::h1::io", "pretend hyper");
        tracing::debug!(target: "opentelemetry_sdk", "pretend sdk");
        tracing::debug!(target: "ureq::unversioned::transport::tcp", "pretend ureq");
        log::debug!(target: "ureq_proto::client", "pretend bridged ureq");
        log::trace!(target: "hyper_util::client::legacy::client", "pretend bridged hyper-util");
        handle.force_flush().unwrap();
    }
    log::warn!(target: "my_step", "user line via log");
    std::thread::sleep(std::time::Duration::from_millis(200));
    handle.force_flush().unwrap();
    let mut records = receiver.records();
    let scopes: Vec<String> = records.iter().map(|r| r.scope_name.clone()).collect();
    assert_eq!(records.len(), 6, "only the user's records: {scopes:?}");
    let via_log = records.pop().unwrap();
    assert_eq!(via_log.body().as_deref(), Some("user line via log"));
    assert_eq!(via_log.scope_name, "my_step");
    assert_eq!(via_log.record.severity_text, "WARN");
    assert_eq!(via_log.attr_str("code.file.path").as_deref(), Some(file!()));
    assert_eq!(
        via_log.attr("log.target"),
        None,
        "bridging fields are not attributes"
    );
    assert!(
        records
            .iter()
            .all(|r| r.body().as_deref() == Some("user line")),
        "{scopes:?}"
    );
}
