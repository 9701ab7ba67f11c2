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
        endpoint: Some("http://collector.example/v1/logs".into()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(layer.endpoint(), "http://collector.example/v1/logs");
}

#[test]
fn a_spool_sync_without_a_spool_is_refused() {
    let error = rejected(OtelLogStoreConfig {
        spool_sync_millis: 1000,
        ..OtelLogStoreConfig::default()
    });
    assert_eq!(error.field(), Some("spool_sync_millis"), "{error}");
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

#[test]
fn a_protocol_or_compression_whose_feature_is_off_is_refused_naming_the_feature() {
    use zenml_otel::{Compression, Protocol};
    let build = |protocol, compression, endpoint: &str| {
        ZenmlOtelLayer::new(OtelLogStoreConfig {
            endpoint: Some(endpoint.into()),
            protocol,
            compression,
            ..OtelLogStoreConfig::default()
        })
    };
    // zstd and HTTPS are asked of a protocol this build has.
    let http = if cfg!(feature = "http-proto") {
        Protocol::HttpProtobuf
    } else {
        Protocol::Grpc
    };
    let plain = "http://127.0.0.1:9";
    let cases = [
        (
            Protocol::HttpProtobuf,
            Compression::None,
            plain,
            "protocol",
            "http-proto",
        ),
        (
            Protocol::HttpJson,
            Compression::None,
            plain,
            "protocol",
            "http-json",
        ),
        (Protocol::Grpc, Compression::None, plain, "protocol", "grpc"),
        (http, Compression::Zstd, plain, "compression", "zstd"),
        (
            http,
            Compression::None,
            "https://127.0.0.1:9",
            "endpoint",
            "tls",
        ),
    ];
    let built = |feature| match feature {
        "http-proto" => cfg!(feature = "http-proto"),
        "http-json" => cfg!(feature = "http-json"),
        "grpc" => cfg!(feature = "grpc"),
        "zstd" => cfg!(feature = "zstd"),
        // gRPC always has TLS.
        _ => cfg!(feature = "tls") || http == Protocol::Grpc,
    };
    for (protocol, compression, endpoint, field, feature) in cases {
        match build(protocol, compression, endpoint) {
            Ok(_) => assert!(built(feature), "{feature} is off, yet {protocol:?} built"),
            Err(error) if !built(feature) => {
                assert_eq!(error.field(), Some(field), "{error}");
                assert!(
                    error.to_string().contains(&format!("`{feature}`")),
                    "{error}"
                );
            }
            Err(error) => panic!("{feature} is on, yet: {error}"),
        }
    }
}
