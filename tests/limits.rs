//! Requests within a collector's size limits: batches are cut by bytes, a record too large for
//! any request is truncated to fit (marked, counted, never dropped), and a request a collector
//! refuses as too large (HTTP 413) is split and sent again.

mod common;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use proptest::prelude::*;
use tracing::info;
use tracing_subscriber::layer::SubscriberExt;
use zenml_otel::testing::{Encoding, OtlpReceiver, ReceivedRecord};
use zenml_otel::{OtelLogStoreConfig, Protocol, ZenmlOtelLayer};

const TRUNCATED: &str = "zenml_otel.truncated_bytes";

/// A body of `len` bytes with two-byte characters in it, so a cut can land inside one.
fn body(i: usize, len: usize) -> String {
    let mut text = format!("{i}:");
    while text.len() < len {
        text.push(if text.len() % 7 == 0 { 'é' } else { 'x' });
    }
    text
}

struct Sent {
    receiver: OtlpReceiver,
    stats: zenml_otel::ExportStats,
}

/// Logs `bodies` through a layer configured with `config`, to a receiver that refuses requests
/// larger than `collector_limit`.
fn send(config: OtelLogStoreConfig, collector_limit: usize, bodies: &[String]) -> Sent {
    let receiver = OtlpReceiver::start().unwrap();
    receiver.set_max_request_bytes(Some(collector_limit));
    let endpoint = match config.protocol {
        Protocol::Grpc => receiver.grpc_endpoint(),
        _ => receiver.endpoint(),
    };
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(endpoint),
        max_queue_size: bodies.len().max(512),
        // These tests are about requests: the queue holds all that is logged.
        max_queue_bytes: 1 << 30,
        ..config
    })
    .unwrap();
    let handle = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let span = tracing::info_span!("step", zenml.pipeline_run_id = "r", zenml.step_id = "s");
        let _step = span.enter();
        for (i, text) in bodies.iter().enumerate() {
            info!(i = i as u64, "{text}");
        }
    });
    handle.force_flush().expect("nothing failed");
    let stats = handle.stats();
    handle.shutdown().unwrap();
    Sent { receiver, stats }
}

/// Every record arrived once, whole or cut on a char boundary and marked; returns how many
/// were marked.
fn check_records(records: &[ReceivedRecord], bodies: &[String]) -> u64 {
    assert_eq!(records.len(), bodies.len(), "every record arrived");
    let mut truncated = 0;
    for record in records {
        let i = match record.attr("i") {
            Some(Value::IntValue(i)) => *i as usize,
            other => panic!("no index: {other:?}"),
        };
        let got = record.body().unwrap();
        if record.attr(TRUNCATED).is_some() {
            truncated += 1;
            assert!(got.len() < bodies[i].len(), "record {i} was cut");
            assert!(
                bodies[i].starts_with(&got),
                "record {i} is a prefix of what was logged"
            );
        } else {
            assert_eq!(got, bodies[i], "record {i} is whole");
        }
    }
    truncated
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn every_request_within_the_limit_and_every_record_exported_whole_or_marked(
        sizes in proptest::collection::vec((0u32..24).prop_map(|bits| 1usize << bits), 1..12),
        limit_kib in 16usize..1024,
    ) {
        // 1 B .. 8 MiB bodies, limits 16 KiB .. 1 MiB; the collector's limit is the same.
        let limit = limit_kib * 1024;
        let bodies: Vec<String> = sizes.iter().enumerate().map(|(i, &n)| body(i, n)).collect();
        let sent = send(
            OtelLogStoreConfig { max_export_batch_bytes: limit, ..Default::default() },
            limit,
            &bodies,
        );
        for request in sent.receiver.requests() {
            prop_assert!(request.raw.len() <= limit, "{} > {limit}", request.raw.len());
        }
        let truncated = check_records(&sent.receiver.records(), &bodies);
        prop_assert_eq!(sent.stats.truncated, truncated);
        prop_assert_eq!(sent.stats.exported, bodies.len() as u64);
        prop_assert_eq!(sent.stats.failed + sent.stats.dropped, 0);
    }
}

#[test]
#[cfg_attr(not(feature = "grpc"), ignore = "needs the `grpc` feature")]
fn grpc_batches_of_large_records_fit_the_collectors_4_mib() {
    // The issue's case: a full batch of 512 records of 8 KiB is a ~4.2 MB request.
    let bodies: Vec<String> = (0..600).map(|i| body(i, 8 * 1024)).collect();
    let config = OtelLogStoreConfig {
        protocol: Protocol::Grpc,
        ..Default::default()
    };
    let sent = send(config, 4 * 1024 * 1024, &bodies);
    assert_eq!(check_records(&sent.receiver.records(), &bodies), 0);
    let requests = sent.receiver.requests();
    assert!(
        requests.len() >= 2,
        "cut by bytes: {} requests",
        requests.len()
    );
    assert!(requests.iter().all(|r| r.encoding == Encoding::Grpc));
    assert_eq!((sent.stats.exported, sent.stats.failed), (600, 0));
}

#[test]
fn http_records_larger_than_any_request_are_truncated_to_fit() {
    // 64 KiB records, one of 8 MiB, against the OTel Collector's 20 MiB HTTP limit.
    let mut bodies: Vec<String> = (0..600).map(|i| body(i, 64 * 1024)).collect();
    bodies.push(body(600, 8 * 1024 * 1024));
    let sent = send(OtelLogStoreConfig::default(), 20 * 1024 * 1024, &bodies);
    assert_eq!(check_records(&sent.receiver.records(), &bodies), 1);
    assert_eq!(sent.stats.truncated, 1);
    assert!(sent
        .receiver
        .requests()
        .iter()
        .all(|r| r.raw.len() <= 4_000_000));
}

#[test]
#[cfg_attr(not(feature = "http-json"), ignore = "needs the `http-json` feature")]
fn json_bodies_are_held_to_the_limit_too() {
    // OTLP/JSON is larger than the protobuf requests are cut by: halved until it fits.
    let bodies: Vec<String> = (0..200).map(|i| body(i, 2048)).collect();
    let config = OtelLogStoreConfig {
        protocol: Protocol::HttpJson,
        max_export_batch_bytes: 64 * 1024,
        ..Default::default()
    };
    let sent = send(config, 64 * 1024, &bodies);
    check_records(&sent.receiver.records(), &bodies);
    assert!(sent
        .receiver
        .requests()
        .iter()
        .all(|r| r.encoding == Encoding::Json && r.raw.len() <= 64 * 1024));
}

#[test]
fn a_request_refused_with_413_is_split_and_sent_again() {
    // Our limit is the default 4 MB; this collector takes 100 KiB at most.
    let bodies: Vec<String> = (0..100).map(|i| body(i, 4096)).collect();
    let sent = send(OtelLogStoreConfig::default(), 100 * 1024, &bodies);
    assert_eq!(check_records(&sent.receiver.records(), &bodies), 0);
    assert!(
        sent.receiver.attempts() > sent.receiver.requests().len(),
        "some were refused"
    );
    assert_eq!((sent.stats.exported, sent.stats.failed), (100, 0));
}

#[test]
fn a_limit_too_small_for_one_record_is_refused_at_construction() {
    let error = ZenmlOtelLayer::new(OtelLogStoreConfig {
        max_export_batch_bytes: 1000,
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(error.field(), Some("max_export_batch_bytes"), "{error}");
}

#[test]
fn the_attribute_limits_cut_long_values_and_count_the_fields_left_out() {
    let receiver = OtlpReceiver::start().unwrap();
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(receiver.endpoint()),
        attribute_value_length_limit: Some(5),
        attribute_count_limit: 2,
        ..Default::default()
    })
    .unwrap();
    let handle = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        info!(
            name = "ééééééé",
            rows = 42u64,
            left = "out",
            out = true,
            "the body is not an attribute, so never cut"
        );
    });
    handle.force_flush().unwrap();
    let record = &receiver.records()[0];
    assert_eq!(
        record.attr_str("name").as_deref(),
        Some("ééééé"),
        "5 characters"
    );
    assert_eq!(record.attr_str("rows").as_deref(), Some("42"));
    assert!(record.attr("left").is_none() && record.attr("out").is_none());
    assert_eq!(record.record.dropped_attributes_count, 2);
    assert_eq!(
        record.body().as_deref(),
        Some("the body is not an attribute, so never cut")
    );
    // Code location and run attributes are not the event's fields: still there.
    assert!(record.attr("code.line.number").is_some());
}

#[test]
fn the_queue_is_bounded_in_bytes_too() {
    // 40 records of 100 KB against a 1 MiB queue bound while a slow collector holds each
    // request for a second: the bound covers records in flight too, so while the first
    // requests are held at most ten records are taken; the rest are dropped and counted.
    let receiver = OtlpReceiver::start().unwrap();
    let slow = zenml_otel::testing::Fault::Delay(std::time::Duration::from_secs(1));
    receiver.set_fault(Some(slow));
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(receiver.endpoint()),
        max_queue_bytes: 1024 * 1024,
        max_export_batch_bytes: 1024 * 1024,
        max_export_batch_size: 1,
        schedule_delay_millis: 600_000,
        ..Default::default()
    })
    .unwrap();
    let handle = layer.handle();
    let text = "x".repeat(100_000);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for i in 0..40u64 {
            info!(i, "{text}");
        }
    });
    handle.force_flush().unwrap();
    let stats = handle.stats();
    assert_eq!(stats.emitted, 40);
    assert!(
        stats.dropped > 0,
        "a 1 MiB bound cannot hold 4 MB: {stats:?}"
    );
    // 1 MiB holds ten records of 100 KB, wherever they are (queued or in flight).
    assert!(stats.exported <= 10, "{stats:?}");
    assert_eq!(stats.exported + stats.dropped, 40, "{stats:?}");
    assert_eq!(receiver.record_count() as u64, stats.exported);
}

#[test]
fn a_queue_byte_bound_below_the_request_limit_is_refused() {
    let error = ZenmlOtelLayer::new(OtelLogStoreConfig {
        max_queue_bytes: 1_000_000,
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(error.field(), Some("max_queue_bytes"), "{error}");
}

#[test]
#[cfg_attr(not(feature = "grpc"), ignore = "needs the `grpc` feature")]
fn a_grpc_request_refused_as_too_large_is_split_and_sent_again() {
    // Our limit is the default 4 MB; this server takes 100 KiB at most and answers OUT_OF_RANGE,
    // which we split at once.
    let bodies: Vec<String> = (0..100).map(|i| body(i, 4096)).collect();
    let config = OtelLogStoreConfig {
        protocol: Protocol::Grpc,
        export_timeout_millis: 300,
        ..Default::default()
    };
    let sent = send(config, 100 * 1024, &bodies);
    assert_eq!(check_records(&sent.receiver.records(), &bodies), 0);
    assert!(sent
        .receiver
        .requests()
        .iter()
        .all(|r| r.raw.len() <= 100 * 1024));
    assert_eq!((sent.stats.exported, sent.stats.failed), (100, 0));
}
