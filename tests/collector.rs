//! The same multi-run scenario through a real OTLP collector (rotel), which forwards to the
//! testing receiver: the per-run resources must survive a real collector intact.

mod common;

use std::collections::HashMap;

use common::rotel::Rotel;
use common::WAIT;
use tracing::{info, info_span};
use tracing_subscriber::layer::SubscriberExt;
use zenml_otel::fields::{PIPELINE_RUN_ID, SOURCE, STEP_ID};
use zenml_otel::testing::OtlpReceiver;
use zenml_otel::{Compression, OtelLogStoreConfig, Protocol, ZenmlOtelLayer};

#[test]
#[ignore = "needs the rotel-agent collector (pip install rotel); .ci/run installs it and runs this with --include-ignored"]
fn resources_survive_a_real_collector_over_http_protobuf() {
    through_rotel(Protocol::HttpProtobuf, Compression::None);
}

#[cfg(feature = "http-json")]
#[test]
#[ignore = "needs the rotel-agent collector (pip install rotel); .ci/run installs it and runs this with --include-ignored"]
fn resources_survive_a_real_collector_over_http_json() {
    // ZenML 0.98's Python exporter sends snake_case JSON, which rotel rejects ("missing field
    // `resourceLogs`"); ours is spec OTLP/JSON and must be accepted.
    through_rotel(Protocol::HttpJson, Compression::None);
}

#[cfg(feature = "grpc")]
#[test]
#[ignore = "needs the rotel-agent collector (pip install rotel); .ci/run installs it and runs this with --include-ignored"]
fn resources_survive_a_real_collector_over_grpc() {
    through_rotel(Protocol::Grpc, Compression::None);
}

#[test]
#[ignore = "needs the rotel-agent collector (pip install rotel); .ci/run installs it and runs this with --include-ignored"]
fn resources_survive_a_real_collector_with_compression() {
    // rotel (0.0.1-alpha10) decodes gzip only: zstd gRPC gets Unimplemented and zstd HTTP a
    // 400. zstd is proven against the testing receiver (tests/transports.rs).
    for protocol in common::built([Protocol::HttpProtobuf, Protocol::HttpJson, Protocol::Grpc]) {
        through_rotel(protocol, Compression::Gzip);
    }
}

#[cfg(feature = "http-json")]
#[test]
#[ignore = "needs the rotel-agent collector (pip install rotel); .ci/run installs it and runs this with --include-ignored"]
fn non_finite_doubles_pass_a_real_collector_over_http_json() {
    // rotel answers 400 to the whole request for `"doubleValue": null` (serde's NaN) and for
    // proto3 JSON's `"NaN"`: the values go as strings, and the batch goes through.
    let receiver = OtlpReceiver::start().unwrap();
    let rotel = Rotel::start_forwarding_to(&receiver.endpoint()).expect("start rotel-agent");
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(rotel.http_endpoint.clone()),
        protocol: Protocol::HttpJson,
        ..OtelLogStoreConfig::default()
    })
    .unwrap();
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || {
        info!(
            loss = f64::NAN,
            best = f64::INFINITY,
            lr = 0.5f64,
            "epoch done"
        );
        info!("next");
    });
    handle
        .force_flush()
        .unwrap_or_else(|e| panic!("rotel refused: {e}\nrotel log:\n{}", rotel.log()));
    let records = receiver.wait_for_records(2, WAIT);
    assert_eq!(records.len(), 2, "rotel log:\n{}", rotel.log());
    let epoch = common::by_body(&records, "epoch done");
    assert_eq!(epoch.attr_str("loss").as_deref(), Some("NaN"));
    assert_eq!(epoch.attr_str("best").as_deref(), Some("Infinity"));
    assert_eq!(epoch.attr_str("lr").as_deref(), Some("0.5"));
    assert_eq!(handle.stats().exported, 2);
}

fn through_rotel(protocol: Protocol, compression: Compression) {
    let receiver = OtlpReceiver::start().unwrap();
    let rotel = Rotel::start_forwarding_to(&receiver.endpoint()).expect("start rotel-agent");
    let endpoint = rotel.endpoint(protocol);
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(endpoint),
        protocol,
        compression,
        ..OtelLogStoreConfig::default()
    })
    .unwrap();
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    const PER_CONTEXT: usize = 20;
    std::thread::scope(|threads| {
        for run in ["run-a", "run-b"] {
            let dispatch = &dispatch;
            threads.spawn(move || {
                tracing::dispatcher::with_default(dispatch, || {
                    let orchestrator = info_span!("pipeline", zenml.pipeline_run_id = run);
                    let _o = orchestrator.enter();
                    for i in 0..PER_CONTEXT {
                        info!(i, "{run}/orchestrator");
                    }
                    for step in ["trainer", "evaluator"] {
                        let parent = orchestrator.clone();
                        threads.spawn(move || {
                            tracing::dispatcher::with_default(dispatch, || {
                                let id = format!("{run}-{step}");
                                let span = info_span!(parent: &parent, "step", zenml.step_id = %id);
                                let _s = span.enter();
                                for i in 0..PER_CONTEXT {
                                    info!(i, "{run}/{step}");
                                }
                            })
                        });
                    }
                })
            });
        }
    });
    handle.force_flush().unwrap_or_else(|e| {
        panic!(
            "{protocol:?}: rotel refused: {e}\nrotel log:\n{}",
            rotel.log()
        )
    });
    let records = receiver.wait_for_records(6 * PER_CONTEXT, WAIT);
    assert_eq!(
        records.len(),
        6 * PER_CONTEXT,
        "rotel log:\n{}",
        rotel.log()
    );
    let mut seen: HashMap<String, usize> = HashMap::new();
    for record in &records {
        let body = record.body().unwrap();
        let (run, who) = body.split_once('/').unwrap();
        assert_eq!(record.resource_attr(PIPELINE_RUN_ID).as_deref(), Some(run));
        if who == "orchestrator" {
            assert_eq!(record.resource_attr(STEP_ID), None);
            assert_eq!(
                record.resource_attr(SOURCE).as_deref(),
                Some("orchestrator")
            );
        } else {
            assert_eq!(record.resource_attr(STEP_ID), Some(format!("{run}-{who}")));
            assert_eq!(record.resource_attr(SOURCE).as_deref(), Some("step"));
        }
        assert_eq!(
            record.resource_attr("service.name").as_deref(),
            Some("zenml")
        );
        assert_eq!(
            record.resource_attr("deployment.environment").as_deref(),
            Some("production")
        );
        assert!(record.attr("code.line.number").is_some());
        *seen.entry(body).or_default() += 1;
    }
    assert_eq!(seen.len(), 6);
    assert!(seen.values().all(|&n| n == PER_CONTEXT), "{seen:?}");
    let stats = handle.stats();
    assert_eq!(
        (stats.emitted, stats.exported, stats.dropped),
        (120, 120, 0)
    );
}

#[test]
#[ignore = "needs the rotel-agent collector (pip install rotel); .ci/run installs it and runs this with --include-ignored"]
fn large_records_pass_a_real_collectors_default_size_limits() {
    // rotel keeps the OpenTelemetry Collector's defaults: 4 MiB per gRPC message, and a cap
    // on HTTP bodies. 512 records of 8 KiB were one refused 4.2 MB gRPC request before requests
    // were cut by bytes, 512 of 64 KiB one 32 MB HTTP request; the 8 MiB record fits no request.
    for protocol in common::built([Protocol::Grpc, Protocol::HttpProtobuf]) {
        for (count, size) in [(1000, 8 * 1024), (1000, 64 * 1024), (1, 8 * 1024 * 1024)] {
            let receiver = OtlpReceiver::start().unwrap();
            let rotel =
                Rotel::start_forwarding_to(&receiver.endpoint()).expect("start rotel-agent");
            let endpoint = rotel.endpoint(protocol);
            let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
                endpoint: Some(endpoint),
                protocol,
                max_queue_size: count,
                // 1,000 records of 64 KiB are more than the default 64 MiB: queue them all.
                max_queue_bytes: 1 << 30,
                max_export_batch_size: count.min(512),
                ..OtelLogStoreConfig::default()
            })
            .unwrap();
            let handle = layer.handle();
            let text = "x".repeat(size);
            tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
                let step = info_span!("step", zenml.pipeline_run_id = "r", zenml.step_id = "s");
                let _step = step.enter();
                for i in 0..count {
                    info!(i = i as u64, "{text}");
                }
            });
            let what = format!("{protocol:?}, {count} records of {size} B");
            handle
                .force_flush()
                .unwrap_or_else(|e| panic!("{what}: {e}\nrotel log:\n{}", rotel.log()));
            let stats = handle.stats();
            assert_eq!(
                (stats.exported, stats.failed, stats.dropped),
                (count as u64, 0, 0),
                "{what}"
            );
            let records = receiver.wait_for_records(count, WAIT);
            assert_eq!(records.len(), count, "{what}: rotel log:\n{}", rotel.log());
            let truncated = records
                .iter()
                .filter(|r| r.attr("zenml_otel.truncated_bytes").is_some())
                .count();
            assert_eq!(truncated as u64, stats.truncated, "{what}");
            assert_eq!(truncated, usize::from(size > 4_000_000), "{what}");
            handle.shutdown().unwrap();
        }
    }
}
