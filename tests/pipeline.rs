//! The export pipeline: headers, step-end export, flush/shutdown, counters under overflow.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Harness, WAIT};
use tracing::{info, info_span};
use zenml_otel::OtelLogStoreConfig;

fn slow_schedule() -> OtelLogStoreConfig {
    OtelLogStoreConfig {
        // Long enough that only an explicit trigger can explain a prompt export.
        schedule_delay_millis: 600_000,
        ..OtelLogStoreConfig::default()
    }
}

#[test]
fn headers_go_on_every_request() {
    let harness = Harness::with(OtelLogStoreConfig {
        headers: HashMap::from([
            ("Authorization".to_owned(), "Bearer token123".to_owned()),
            ("x-tenant".to_owned(), "ml-team".to_owned()),
        ]),
        ..OtelLogStoreConfig::default()
    });
    harness.run(|| info!("with headers"));
    harness.handle.force_flush().unwrap();
    let requests = harness.receiver.requests();
    assert!(!requests.is_empty());
    for request in requests {
        assert_eq!(request.header("authorization"), Some("Bearer token123"));
        assert_eq!(request.header("x-tenant"), Some("ml-team"));
        assert_eq!(request.path, "/v1/logs");
        assert_eq!(
            request.header("content-type"),
            Some("application/x-protobuf")
        );
    }
}

#[test]
fn closing_a_step_span_exports_its_records_without_waiting_for_the_schedule() {
    let harness = Harness::with(slow_schedule());
    let closed_at = harness.run(|| {
        let run = info_span!("run", zenml.pipeline_run_id = "r");
        let _r = run.enter();
        {
            let step = info_span!("step", zenml.step_id = "s1");
            let _s = step.enter();
            for i in 0..10 {
                info!(i, "step line");
            }
        }
        Instant::now()
    });
    let records = harness.receiver.wait_for_records(10, WAIT);
    assert_eq!(records.len(), 10, "step records not exported at step end");
    assert!(closed_at.elapsed() < Duration::from_secs(600));
    assert!(records
        .iter()
        .all(|r| r.resource_attr("zenml.step_id").as_deref() == Some("s1")));
}

#[test]
fn batches_are_exported_on_schedule_without_a_flush() {
    let harness = Harness::with(OtelLogStoreConfig {
        schedule_delay_millis: 50,
        ..OtelLogStoreConfig::default()
    });
    harness.run(|| info!("scheduled"));
    assert_eq!(harness.receiver.wait_for_records(1, WAIT).len(), 1);
}

#[test]
fn shutdown_delivers_everything_then_counts_later_records_as_dropped() {
    let harness = Harness::with(slow_schedule());
    harness.run(|| {
        for i in 0..1000 {
            info!(i, "line");
        }
    });
    harness.handle.shutdown().unwrap();
    assert_eq!(harness.receiver.record_count(), 1000);
    harness.handle.shutdown().expect("shutdown is idempotent");
    harness.run(|| info!("after shutdown"));
    let stats = harness.handle.stats();
    assert_eq!(stats.emitted, 1001);
    assert_eq!(stats.exported, 1000);
    assert_eq!(stats.dropped, 1);
    assert_eq!(stats.failed, 0);
    assert!(harness.handle.force_flush().unwrap_err().is_shut_down());
}

#[test]
fn guard_drop_shuts_down_and_delivers() {
    let harness = Harness::with(slow_schedule());
    let guard = harness.handle.guard();
    harness.run(|| info!("before guard drop"));
    drop(guard);
    assert_eq!(harness.receiver.record_count(), 1);
    harness.run(|| info!("after guard drop"));
    assert_eq!(harness.handle.stats().dropped, 1);
}

#[test]
fn overflow_is_counted_exactly() {
    let harness = Harness::with(OtelLogStoreConfig {
        max_queue_size: 16,
        max_export_batch_size: 16,
        schedule_delay_millis: 600_000,
        ..OtelLogStoreConfig::default()
    });
    const N: u64 = 20_000;
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                harness.run(|| {
                    for i in 0..N / 4 {
                        info!(i, "burst");
                    }
                })
            });
        }
    });
    harness.handle.force_flush().unwrap();
    let stats = harness.handle.stats();
    assert_eq!(stats.emitted, N);
    assert!(
        stats.dropped > 0,
        "a 16-record queue must overflow: {stats:?}"
    );
    assert_eq!(stats.failed, 0);
    assert_eq!(stats.exported + stats.dropped, N, "{stats:?}");
    assert_eq!(harness.receiver.record_count() as u64, stats.exported);
}

#[test]
fn failed_exports_are_counted() {
    let layer = zenml_otel::ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(common::refused_endpoint()),
        export_timeout_millis: 300,
        // No retry after the export timeout: the collector never comes.
        max_retry_elapsed_millis: 1,
        ..OtelLogStoreConfig::default()
    })
    .unwrap();
    let handle = layer.handle();
    use tracing_subscriber::layer::SubscriberExt as _;
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for _ in 0..3 {
            info!("nowhere to go");
        }
        assert!(handle.force_flush().is_err());
    });
    let stats = handle.stats();
    assert_eq!((stats.emitted, stats.failed, stats.exported), (3, 3, 0));
}

#[test]
fn a_full_batch_is_exported_without_waiting_for_the_schedule() {
    let harness = Harness::with(OtelLogStoreConfig {
        max_export_batch_size: 8,
        max_queue_size: 64,
        ..slow_schedule()
    });
    harness.run(|| {
        for i in 0..8 {
            info!(i, "batch line");
        }
    });
    assert_eq!(harness.receiver.wait_for_records(8, WAIT).len(), 8);
}

#[test]
fn a_failure_of_an_earlier_export_is_reported_by_the_next_flush_once() {
    let layer = zenml_otel::ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(common::refused_endpoint()),
        export_timeout_millis: 300,
        max_retry_elapsed_millis: 1,
        ..slow_schedule()
    })
    .unwrap();
    let handle = layer.handle();
    use tracing_subscriber::layer::SubscriberExt as _;
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let step = info_span!("step", zenml.step_id = "s");
        let _s = step.enter();
        info!("exported at step end, and fails");
    });
    let deadline = Instant::now() + WAIT;
    while handle.stats().failed == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        handle.stats().failed,
        1,
        "the step-end export ran and failed"
    );
    assert!(
        handle.force_flush().is_err(),
        "the earlier failure must not be hidden"
    );
    handle.force_flush().expect("each failure is reported once");
}
