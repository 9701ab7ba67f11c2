//! The receipt (`ZENML_OTEL_STATS_FILE`) of a program on the official pipeline with
//! `ZenmlLogExporter`: records the SDK's `BatchLogProcessor` dropped (its queue full) never
//! reach the exporter, and are counted all the same, because `ZenmlLogProcessor` counted them
//! as emitted; what the crate's export threads log is neither counted nor exported. Its own
//! test binary: that count is the process's, and the subscriber is global.

mod common;
mod sdk_support;

use std::time::Duration;

use opentelemetry_sdk::logs::BatchConfigBuilder;
use sdk_support::*;
use zenml_otel::handover;
use zenml_otel::testing::OtlpReceiver;

const EVENTS: u64 = 300;

#[test]
fn records_the_sdk_dropped_are_emitted_and_dropped_in_the_receipt() {
    let dir = std::env::temp_dir().join(format!("zenml-otel-sdk-receipt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stats = dir.join("stats.json");
    let _env = env(&[(handover::STATS_FILE, stats.to_str().unwrap())]);
    let receiver = OtlpReceiver::start().unwrap();
    let exporter = zenml_exporter(&receiver);
    let handle = exporter.handle();
    // A small queue the logging thread outruns while each export waits for the collector.
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(8)
        .with_max_export_batch_size(8)
        .with_scheduled_delay(Duration::from_millis(50))
        .build();
    let official = Official::with_batch(exporter, provider_resource(), batch);
    // As a program's `init()` does: every thread's events, the `log` crate's too (ureq logs
    // each request on the export threads: none of those may be counted, or exported).
    tracing::dispatcher::set_global_default(official.dispatch.clone()).unwrap();
    tracing_log::LogTracer::init().unwrap();
    for seq in 0..EVENTS {
        tracing::info!(seq, "burst");
    }
    official.logs.shutdown().expect("shutdown");
    let receipt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&stats).expect("the receipt")).unwrap();
    let count = |key: &str| {
        receipt[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key}: {receipt}"))
    };
    let received = receiver.records().len() as u64;
    assert_eq!(count("emitted"), EVENTS, "{receipt}");
    assert_eq!(count("exported"), received, "{receipt}");
    assert!(
        count("dropped") > 0,
        "the SDK's queue overflowed: {receipt}"
    );
    assert_eq!(
        count("exported") + count("dropped") + count("failed") + count("rejected"),
        EVENTS,
        "every record accounted for: {receipt}"
    );
    let final_stats = handle.stats();
    assert_eq!(
        (final_stats.emitted, final_stats.dropped),
        (count("emitted"), count("dropped"))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
