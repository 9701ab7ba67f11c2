//! Losses are announced on stderr once per 10 s, never through `tracing` and never per record.

mod common;

use std::process::Command;

use common::Harness;
use tracing::info;
use zenml_otel::OtelLogStoreConfig;

/// Overflows a tiny queue; `overflow_prints_one_warning` runs it in a child process to read
/// its stderr.
#[test]
fn child_overflows_the_queue() {
    let harness = Harness::with(OtelLogStoreConfig {
        max_queue_size: 4,
        schedule_delay_millis: 600_000,
        ..OtelLogStoreConfig::default()
    });
    harness.run(|| {
        for i in 0..10_000 {
            info!(i, "overflow");
        }
    });
    harness.handle.force_flush().unwrap();
    let stats = harness.handle.stats();
    assert!(stats.dropped > 9_000, "{stats:?}");
    assert_eq!(stats.exported + stats.dropped, 10_000, "{stats:?}");
}

#[test]
fn overflow_prints_one_warning() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_overflows_the_queue", "--nocapture"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("zenml-otel:"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one rate-limited warning, got:\n{stderr}"
    );
    assert!(warnings[0].contains("dropped"), "{}", warnings[0]);
}
