//! Configuration: defaults, deserialization, and validation errors that name the field.

use std::collections::HashMap;

use zenml_otel::{OtelLogStoreConfig, ZenmlOtelLayer};

fn rejected(config: OtelLogStoreConfig) -> zenml_otel::Error {
    ZenmlOtelLayer::new(config).expect_err("config should be rejected")
}

#[test]
fn defaults_mirror_the_zenml_flavor() {
    let cfg = OtelLogStoreConfig::default();
    assert_eq!(cfg.service_name, "zenml");
    assert_eq!(cfg.service_version, "1.0.0");
    assert_eq!(cfg.deployment_environment, "production");
    assert_eq!(cfg.endpoint, None);
    assert!(cfg.headers.is_empty());
    assert!(!cfg.insecure);
    assert_eq!(cfg.max_queue_size, 2048);
    assert_eq!(cfg.schedule_delay_millis, 1000);
    assert_eq!(cfg.max_export_batch_size, 512);
    let parsed: OtelLogStoreConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(parsed, cfg);
}

#[test]
fn headers_as_map_or_as_json_string() {
    let from_map: OtelLogStoreConfig =
        serde_json::from_str(r#"{"headers": {"Authorization": "Bearer token123"}}"#).unwrap();
    let from_string: OtelLogStoreConfig =
        serde_json::from_str(r#"{"headers": "{\"Authorization\":\"Bearer token123\"}"}"#).unwrap();
    assert_eq!(from_map.headers["Authorization"], "Bearer token123");
    assert_eq!(from_map, from_string);
    let bad = serde_json::from_str::<OtelLogStoreConfig>(r#"{"headers": "not json"}"#)
        .unwrap_err()
        .to_string();
    assert!(bad.contains("JSON object"), "{bad}");
}

#[test]
fn unknown_fields_are_rejected() {
    let error = serde_json::from_str::<OtelLogStoreConfig>(r#"{"servic_name": "x"}"#)
        .unwrap_err()
        .to_string();
    assert!(error.contains("servic_name"), "{error}");
}

#[test]
fn every_bad_value_names_its_field() {
    let cases: Vec<(OtelLogStoreConfig, &str, &str)> = vec![
        (
            OtelLogStoreConfig {
                endpoint: Some("otel-collector:4318".into()),
                ..Default::default()
            },
            "endpoint",
            "otel-collector:4318",
        ),
        (
            OtelLogStoreConfig {
                endpoint: Some("not a url".into()),
                ..Default::default()
            },
            "endpoint",
            "not a URL",
        ),
        (
            OtelLogStoreConfig {
                endpoint: Some("ftp://h:1".into()),
                ..Default::default()
            },
            "endpoint",
            "ftp",
        ),
        (
            OtelLogStoreConfig {
                max_queue_size: 0,
                ..Default::default()
            },
            "max_queue_size",
            "at least 1",
        ),
        (
            OtelLogStoreConfig {
                max_export_batch_size: 0,
                ..Default::default()
            },
            "max_export_batch_size",
            "at least 1",
        ),
        (
            OtelLogStoreConfig {
                max_export_batch_size: 4096,
                ..Default::default()
            },
            "max_export_batch_size",
            "larger than max_queue_size",
        ),
        (
            OtelLogStoreConfig {
                schedule_delay_millis: 0,
                ..Default::default()
            },
            "schedule_delay_millis",
            "at least 1",
        ),
        (
            OtelLogStoreConfig {
                service_name: " ".into(),
                ..Default::default()
            },
            "service_name",
            "empty",
        ),
        (
            OtelLogStoreConfig {
                headers: HashMap::from([("bad header".into(), "v".into())]),
                ..Default::default()
            },
            "headers",
            "bad header",
        ),
    ];
    for (config, field, problem) in cases {
        let error = rejected(config);
        assert_eq!(error.field(), Some(field), "{error}");
        let message = error.to_string();
        assert!(
            message.contains(field) && message.contains(problem),
            "{message}"
        );
    }
}

#[test]
fn header_values_never_appear_in_errors_or_debug() {
    let secret = "Bearer s3cr3t\n";
    let config = OtelLogStoreConfig {
        headers: HashMap::from([("Authorization".into(), secret.into())]),
        ..Default::default()
    };
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("s3cr3t") && debug.contains("Authorization"),
        "{debug}"
    );
    let error = rejected(config);
    assert_eq!(error.field(), Some("headers"));
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
}

#[test]
fn endpoint_gets_the_logs_path() {
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some("http://otel-collector:4318".into()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(layer.endpoint(), "http://otel-collector:4318/v1/logs");
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some("https://collector.example/v1/logs".into()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(layer.endpoint(), "https://collector.example/v1/logs");
}

#[test]
fn a_zero_or_absurd_retry_window_and_a_tiny_request_limit_are_refused() {
    for millis in [0, 86_400_001, u64::MAX] {
        let error = rejected(OtelLogStoreConfig {
            max_retry_elapsed_millis: millis,
            ..OtelLogStoreConfig::default()
        });
        assert_eq!(error.field(), Some("max_retry_elapsed_millis"), "{error}");
    }
    let error = rejected(OtelLogStoreConfig {
        max_export_batch_bytes: 16 * 1024 - 1,
        ..OtelLogStoreConfig::default()
    });
    assert_eq!(error.field(), Some("max_export_batch_bytes"), "{error}");
}
