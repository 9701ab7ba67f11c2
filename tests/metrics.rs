//! The layer's own metrics (`metrics_interval_millis`, issue 28), received by the `testing`
//! receiver over every transport this build has: periodic exports and a final one at
//! shutdown whose points equal `stats()` name by name; a burst larger than the queue counted
//! as `queue_full`; a pause longer than the interval still exported, cumulative; a collector
//! that refuses (or never answers) metrics loses no log and keeps shutdown's bound; rotel
//! forwarding them (ignored in plain `cargo test`: it needs the rotel-agent binary).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{built, WAIT};
use tracing::{info, info_span, Dispatch};
use tracing_subscriber::layer::SubscriberExt;
use zenml_otel::testing::{Fault, MetricPoint, OtlpReceiver, ReceivedMetrics};
use zenml_otel::{ExportStats, LogStoreHandle, OtelLogStoreConfig, Protocol, ZenmlOtelLayer};

/// The metrics' names, fixed by the issue (and the semantic conventions).
const CREATED: &str = "otel.sdk.log.created";
const PROCESSED: &str = "otel.sdk.processor.log.processed";
const QUEUE_SIZE: &str = "otel.sdk.processor.log.queue.size";
const QUEUE_CAPACITY: &str = "otel.sdk.processor.log.queue.capacity";
const INFLIGHT: &str = "otel.sdk.exporter.log.inflight";
const EXPORTED: &str = "otel.sdk.exporter.log.exported";

/// A layer exporting to `receiver` over `protocol`, with `config`'s other fields.
fn layer(
    receiver: &OtlpReceiver,
    protocol: Protocol,
    config: OtelLogStoreConfig,
) -> (Dispatch, LogStoreHandle) {
    let endpoint = match protocol {
        Protocol::Grpc => receiver.grpc_endpoint(),
        _ => receiver.endpoint(),
    };
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(endpoint),
        protocol,
        ..config
    })
    .expect("a valid config");
    let handle = layer.handle();
    (
        Dispatch::new(tracing_subscriber::registry().with(layer)),
        handle,
    )
}

fn every_protocol() -> Vec<Protocol> {
    built([Protocol::HttpProtobuf, Protocol::HttpJson, Protocol::Grpc])
}

/// The sum of `name`'s points that `keep` keeps.
fn total(metrics: &ReceivedMetrics, name: &str, keep: &dyn Fn(&MetricPoint) -> bool) -> u64 {
    metrics
        .points()
        .iter()
        .filter(|point| point.name == name && keep(point))
        .map(|point| point.value as u64)
        .sum()
}

fn error_type(point: &MetricPoint) -> Option<String> {
    point.attr_str("error.type")
}

/// Each `stats()` counter and the metric points docs/metrics.md says it is, side by side.
fn by_name(metrics: &ReceivedMetrics, stats: &ExportStats) -> Vec<(&'static str, u64, u64)> {
    let all = |_: &MetricPoint| true;
    vec![
        ("emitted", stats.emitted, total(metrics, CREATED, &all)),
        (
            "exported",
            stats.exported,
            total(metrics, EXPORTED, &|p| error_type(p).is_none()),
        ),
        (
            "rejected",
            stats.rejected,
            total(metrics, EXPORTED, &|p| {
                error_type(p).as_deref() == Some("rejected")
            }),
        ),
        (
            "failed",
            stats.failed,
            total(metrics, EXPORTED, &|p| {
                error_type(p).is_some_and(|t| t != "rejected")
            }),
        ),
        (
            "dropped",
            stats.dropped,
            total(metrics, PROCESSED, &|p| error_type(p).is_some()),
        ),
        (
            "truncated",
            stats.truncated,
            total(metrics, "zenml_otel.log.truncated", &all),
        ),
        (
            "live_runs",
            stats.live_runs,
            total(metrics, "zenml_otel.run.live", &all),
        ),
        (
            "recovered",
            stats.recovered,
            total(metrics, "zenml_otel.spool.recovered", &all),
        ),
        (
            "spooled",
            stats.spooled,
            total(metrics, "zenml_otel.spool.spooled", &all),
        ),
        (
            "unspooled",
            stats.unspooled,
            total(metrics, "zenml_otel.spool.unspooled", &all),
        ),
        (
            "spool_torn",
            stats.spool_torn,
            total(metrics, "zenml_otel.spool.torn", &all),
        ),
    ]
}

fn assert_equals_stats(metrics: &ReceivedMetrics, stats: &ExportStats, what: &str) {
    for (name, stat, points) in by_name(metrics, stats) {
        assert_eq!(
            points, stat,
            "{what}: the points of stats().{name} ({stats:?})"
        );
    }
}

#[test]
fn shutdown_exports_the_final_counts_after_periodic_ones_equal_to_stats_name_by_name() {
    for protocol in every_protocol() {
        let receiver = OtlpReceiver::start().unwrap();
        let (dispatch, handle) = layer(
            &receiver,
            protocol,
            OtelLogStoreConfig {
                metrics_interval_millis: 100,
                deployment_environment: "staging".into(),
                headers: [("x-team".to_owned(), "sre".to_owned())].into(),
                ..OtelLogStoreConfig::default()
            },
        );
        tracing::dispatcher::with_default(&dispatch, || {
            let _run = info_span!("step", zenml.pipeline_run_id = "run-1").entered();
            for n in 0..10 {
                info!(n, "accepted, 2 of them rejected");
            }
            receiver.fail_next(
                1,
                Fault::PartialSuccess {
                    rejected: 2,
                    message: "not today".into(),
                },
            );
            handle.force_flush().unwrap();
            for n in 0..5 {
                info!(n, "refused for good");
            }
            receiver.fail_next(
                1,
                Fault::Status {
                    code: 400,
                    retry_after: None,
                },
            );
            assert!(handle.force_flush().is_err(), "{protocol:?}: a 400 fails");
            for n in 0..20 {
                info!(n, "delivered at shutdown");
            }
        });
        let periodic = receiver.wait_for_metrics(1, WAIT).len();
        assert!(
            periodic >= 1,
            "{protocol:?}: a periodic export before shutdown"
        );
        handle.shutdown().unwrap();
        let stats = handle.stats();
        let all = receiver.metrics();
        assert!(
            all.len() > periodic,
            "{protocol:?}: a final export at shutdown, after {periodic} periodic ones"
        );
        let last = all.last().unwrap();
        assert_equals_stats(last, &stats, &format!("{protocol:?}"));
        assert_eq!(
            (stats.emitted, stats.exported, stats.rejected, stats.failed),
            (35, 28, 2, 5),
            "{protocol:?}"
        );
        let failed_as = |t: &str| total(last, EXPORTED, &|p| error_type(p).as_deref() == Some(t));
        let refused_as = if protocol == Protocol::Grpc {
            "INVALID_ARGUMENT"
        } else {
            "400"
        };
        assert_eq!(
            failed_as(refused_as),
            5,
            "{protocol:?}: error.type is the cause"
        );
        assert_eq!(stats.metric_export_failures, 0, "{protocol:?}");
        assert_eq!(stats.metric_exports as usize, all.len(), "{protocol:?}");

        // The process's resource, not a run's; the same headers as the logs.
        let point = &last.points()[0];
        assert_eq!(
            point.resource_attr("service.name").as_deref(),
            Some("zenml")
        );
        assert_eq!(
            point.resource_attr("deployment.environment").as_deref(),
            Some("staging")
        );
        assert_eq!(
            point
                .resource_attr("deployment.environment.name")
                .as_deref(),
            Some("staging")
        );
        assert!(point.resource_attr("service.instance.id").is_some());
        assert_eq!(point.resource_attr("zenml.pipeline_run_id"), None);
        assert_eq!(last.header("x-team"), Some("sre"), "{protocol:?}");
        let expected_path = if protocol == Protocol::Grpc {
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
        } else {
            "/v1/metrics"
        };
        assert_eq!(last.path, expected_path);
        assert_shapes(last, protocol, &receiver);
    }
}

/// Instruments, units and attributes as the conventions (and opentelemetry_sdk) have them.
fn assert_shapes(metrics: &ReceivedMetrics, protocol: Protocol, receiver: &OtlpReceiver) {
    let exporter_type = match protocol {
        Protocol::Grpc => "otlp_grpc_log_exporter",
        Protocol::HttpJson => "otlp_http_json_log_exporter",
        _ => "otlp_http_log_exporter",
    };
    let port = receiver.local_addr().port().to_string();
    for point in metrics.points() {
        assert!(point.cumulative, "{}: a cumulative sum", point.name);
        assert!(
            point.start_time_unix_nano > 0 && point.time_unix_nano >= point.start_time_unix_nano
        );
        let counter = ![
            QUEUE_SIZE,
            QUEUE_CAPACITY,
            INFLIGHT,
            "zenml_otel.run.live",
            "zenml_otel.spool.spooled",
        ]
        .contains(&point.name.as_str());
        assert_eq!(point.monotonic, Some(counter), "{}", point.name);
        match point.name.as_str() {
            CREATED => assert!(point.attributes.is_empty(), "as opentelemetry_sdk's"),
            PROCESSED | QUEUE_SIZE | QUEUE_CAPACITY => {
                assert_eq!(
                    point.attr_str("otel.component.type").as_deref(),
                    Some("batching_log_processor")
                );
                let name = point.attr_str("otel.component.name").unwrap();
                assert!(name.starts_with("batching_log_processor/"), "{name}");
            }
            INFLIGHT | EXPORTED => {
                assert_eq!(
                    point.attr_str("otel.component.type").as_deref(),
                    Some(exporter_type)
                );
                let name = point.attr_str("otel.component.name").unwrap();
                assert!(name.starts_with(&format!("{exporter_type}/")), "{name}");
                assert_eq!(
                    point.attr_str("server.address").as_deref(),
                    Some("127.0.0.1")
                );
                assert_eq!(point.attr_str("server.port"), Some(port.clone()));
            }
            _ => {}
        }
        if point.name.starts_with("otel.sdk.") {
            assert_eq!(point.unit, "{log_record}", "{}", point.name);
        }
    }
    let capacity = total(metrics, QUEUE_CAPACITY, &|_| true);
    assert_eq!(capacity, 2048, "max_queue_size");
    for reason in ["queue_full", "already_shutdown", "shutdown_deadline"] {
        assert!(
            metrics.points().iter().any(|p| p.name == PROCESSED && p.attr_str("error.type").as_deref() == Some(reason)),
            "{reason}: a series from the start, for alerts"
        );
    }
}

#[test]
fn the_final_export_is_shutdowns_own() {
    // An interval of a day: no periodic export, so the one request is the final one.
    let receiver = OtlpReceiver::start().unwrap();
    let config = OtelLogStoreConfig {
        metrics_interval_millis: 86_400_000,
        ..OtelLogStoreConfig::default()
    };
    let (dispatch, handle) = layer(&receiver, Protocol::HttpProtobuf, config.clone());
    tracing::dispatcher::with_default(&dispatch, || info!("one"));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(receiver.metrics_attempts(), 0, "nothing before shutdown");
    handle.shutdown().unwrap();
    let metrics = receiver.metrics();
    assert_eq!(metrics.len(), 1, "one final export");
    assert_equals_stats(&metrics[0], &handle.stats(), "final");
    handle.shutdown().unwrap();
    assert_eq!(
        receiver.metrics_attempts(),
        1,
        "once, however often shutdown is called"
    );

    // Every handle dropped without a shutdown: the pipeline's own stop sends it.
    let receiver = OtlpReceiver::start().unwrap();
    let (dispatch, handle) = layer(&receiver, Protocol::HttpProtobuf, config);
    tracing::dispatcher::with_default(&dispatch, || info!("two"));
    drop((dispatch, handle));
    let metrics = receiver.wait_for_metrics(1, WAIT);
    assert_eq!(metrics.len(), 1, "a final export when the layer is dropped");
    assert_eq!(total(&metrics[0], CREATED, &|_| true), 1);
    assert_eq!(
        total(&metrics[0], EXPORTED, &|p| error_type(p).is_none()),
        1
    );
}

#[test]
fn a_burst_larger_than_the_queue_is_counted_queue_full() {
    for protocol in every_protocol() {
        let receiver = OtlpReceiver::start().unwrap();
        // A slow collector: the queue of 64 fills at once.
        receiver.set_fault(Some(Fault::Delay(Duration::from_millis(100))));
        let (dispatch, handle) = layer(
            &receiver,
            protocol,
            OtelLogStoreConfig {
                metrics_interval_millis: 50,
                max_queue_size: 64,
                max_export_batch_size: 64,
                ..OtelLogStoreConfig::default()
            },
        );
        tracing::dispatcher::with_default(&dispatch, || {
            for n in 0..5_000 {
                info!(n, "burst");
            }
        });
        handle.shutdown().unwrap();
        let stats = handle.stats();
        assert!(stats.dropped > 0, "{protocol:?}: {stats:?}");
        let last = receiver.metrics().pop().expect("a final export");
        assert_equals_stats(&last, &stats, &format!("{protocol:?}"));
        let queue_full = total(&last, PROCESSED, &|p| {
            error_type(p).as_deref() == Some("queue_full")
        });
        assert_eq!(
            queue_full, stats.dropped,
            "{protocol:?}: every drop is queue_full"
        );
        assert_eq!(
            stats.exported as usize,
            receiver.record_count(),
            "{protocol:?}"
        );
        let handed_over = total(&last, PROCESSED, &|p| error_type(p).is_none());
        assert_eq!(
            handed_over, stats.exported,
            "{protocol:?}: processed once each"
        );
    }
}

#[test]
fn a_pause_longer_than_the_interval_is_exported_with_the_same_totals() {
    let receiver = OtlpReceiver::start().unwrap();
    let (dispatch, handle) = layer(
        &receiver,
        Protocol::HttpProtobuf,
        OtelLogStoreConfig {
            metrics_interval_millis: 100,
            ..OtelLogStoreConfig::default()
        },
    );
    tracing::dispatcher::with_default(&dispatch, || {
        for n in 0..5 {
            info!(n, "before the pause");
        }
    });
    handle.force_flush().unwrap();
    // Until an export has seen the flushed counts.
    let exported = |m: &ReceivedMetrics| total(m, EXPORTED, &|p| error_type(p).is_none());
    let deadline = Instant::now() + WAIT;
    while !receiver.metrics().iter().any(|m| exported(m) == 5) {
        assert!(Instant::now() < deadline, "no export saw the 5 records");
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = receiver.metrics().len();
    // Nothing is logged for six intervals.
    std::thread::sleep(Duration::from_millis(600));
    let during: Vec<ReceivedMetrics> = receiver.metrics().split_off(before);
    assert!(
        during.len() >= 3,
        "the thread exports on its own clock: {} exports in 6 intervals",
        during.len()
    );
    for metrics in &during {
        assert_eq!(
            total(metrics, CREATED, &|_| true),
            5,
            "cumulative: no reset"
        );
        assert_eq!(exported(metrics), 5);
    }
    let times: Vec<u64> = during
        .iter()
        .map(|m| m.points()[0].time_unix_nano)
        .collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    let starts: Vec<u64> = during
        .iter()
        .map(|m| m.points()[0].start_time_unix_nano)
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] == w[1]),
        "one start: {starts:?}"
    );
    handle.shutdown().unwrap();
    assert_equals_stats(
        receiver.metrics().last().unwrap(),
        &handle.stats(),
        "after the pause",
    );
}

#[test]
fn a_collector_refusing_metrics_loses_no_log() {
    for protocol in every_protocol() {
        let receiver = OtlpReceiver::start().unwrap();
        receiver.set_metrics_fault(Some(Fault::Status {
            code: 500,
            retry_after: None,
        }));
        let (dispatch, handle) = layer(
            &receiver,
            protocol,
            OtelLogStoreConfig {
                metrics_interval_millis: 20,
                ..OtelLogStoreConfig::default()
            },
        );
        tracing::dispatcher::with_default(&dispatch, || {
            for round in 0..4 {
                for n in 0..50 {
                    info!(round, n, "logged while metrics fail");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        handle.shutdown().unwrap();
        let stats = handle.stats();
        assert_eq!(
            (stats.emitted, stats.exported, stats.failed, stats.dropped),
            (200, 200, 0, 0),
            "{protocol:?}"
        );
        assert_eq!(receiver.record_count(), 200, "{protocol:?}");
        assert!(receiver.metrics().is_empty());
        assert!(stats.metric_export_failures >= 2, "{protocol:?}: {stats:?}");
        assert_eq!(stats.metric_exports, 0);
        assert_eq!(
            receiver.metrics_attempts() as u64,
            stats.metric_export_failures,
            "{protocol:?}: counted apart, each once"
        );
    }
}

#[test]
fn a_collector_that_never_answers_metrics_delays_no_log_and_shutdown_keeps_its_bound() {
    for protocol in every_protocol() {
        let receiver = OtlpReceiver::start().unwrap();
        receiver.set_metrics_fault(Some(Fault::Blackhole));
        let (dispatch, handle) = layer(
            &receiver,
            protocol,
            OtelLogStoreConfig {
                metrics_interval_millis: 10,
                export_timeout_millis: 1_000,
                ..OtelLogStoreConfig::default()
            },
        );
        // A metrics request is held by now.
        let deadline = Instant::now() + WAIT;
        while receiver.metrics_attempts() == 0 {
            assert!(
                Instant::now() < deadline,
                "{protocol:?}: no metrics request"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        tracing::dispatcher::with_default(&dispatch, || {
            for n in 0..100 {
                info!(n, "logged while metrics hang");
            }
        });
        let flushing = Instant::now();
        handle.force_flush().unwrap();
        assert!(
            flushing.elapsed() < Duration::from_millis(900),
            "{protocol:?}: the logs never wait on metrics ({:?})",
            flushing.elapsed()
        );
        let stopping = Instant::now();
        handle.shutdown().unwrap();
        assert!(
            stopping.elapsed() < Duration::from_millis(1_200 + 300),
            "{protocol:?}: shutdown within its bound ({:?})",
            stopping.elapsed()
        );
        assert_eq!(handle.stats().exported, 100);
        assert_eq!(receiver.record_count(), 100);
    }
}

#[test]
fn metrics_are_off_by_default() {
    let receiver = OtlpReceiver::start().unwrap();
    let (dispatch, handle) = layer(
        &receiver,
        Protocol::HttpProtobuf,
        OtelLogStoreConfig::default(),
    );
    tracing::dispatcher::with_default(&dispatch, || info!("no metrics"));
    handle.shutdown().unwrap();
    assert_eq!(receiver.metrics_attempts(), 0);
    assert_eq!(handle.stats().metric_exports, 0);
}

/// `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` used as is, with no `/v1/logs` and no base variable:
/// no metrics URL. Run by `a_logs_url_without_a_metrics_one_turns_metrics_off_with_one_warning`
/// in a child process (it reads the environment).
#[test]
fn child_without_a_metrics_url() {
    if std::env::var_os("ZENML_OTEL_METRICS_INTERVAL_MILLIS").is_none() {
        return; // run by the test below
    }
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        export_timeout_millis: 300,
        ..OtelLogStoreConfig::default()
    })
    .unwrap();
    let handle = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        info!("a record for a collector that is not there");
    });
    let _ = handle.shutdown();
    assert_eq!(
        handle.stats().metric_exports + handle.stats().metric_export_failures,
        0
    );
}

#[test]
fn a_logs_url_without_a_metrics_one_turns_metrics_off_with_one_warning() {
    let receiver = OtlpReceiver::start().unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_without_a_metrics_url", "--nocapture"])
        .env("ZENML_OTEL_METRICS_INTERVAL_MILLIS", "20")
        .env(
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            format!("{}/custom-logs", receiver.endpoint()),
        )
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("metrics are off"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning:\n{stderr}");
    assert!(
        warnings[0].contains("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
        "{}",
        warnings[0]
    );
    assert_eq!(receiver.metrics_attempts(), 0);
}

#[test]
#[ignore = "needs rotel"]
fn rotel_forwards_the_metrics() {
    let receiver = OtlpReceiver::start().unwrap();
    let rotel = common::rotel::Rotel::start_forwarding_to(&receiver.endpoint())
        .unwrap_or_else(|e| panic!("{e}"));
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(rotel.endpoint(Protocol::HttpProtobuf)),
        metrics_interval_millis: 100,
        ..OtelLogStoreConfig::default()
    })
    .unwrap();
    let handle = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for n in 0..20 {
            info!(n, "through rotel");
        }
    });
    handle.shutdown().unwrap();
    let stats = handle.stats();
    // rotel forwards in its own batches: wait for the final counts to come through.
    let deadline = Instant::now() + WAIT;
    let finals = loop {
        let finals: Vec<ReceivedMetrics> = receiver
            .metrics()
            .into_iter()
            .filter(|m| total(m, EXPORTED, &|p| error_type(p).is_none()) == stats.exported)
            .collect();
        if !finals.is_empty() {
            break finals;
        }
        assert!(
            Instant::now() < deadline,
            "no metrics with the final counts came through rotel; its log:\n{}",
            rotel.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_equals_stats(finals.last().unwrap(), &stats, "through rotel");
    assert_eq!(receiver.record_count(), 20);
}
