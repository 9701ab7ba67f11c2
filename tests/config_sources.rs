//! Where values come from when they equal the defaults (issue 27): a key a handed-over
//! configuration or a configuration file holds, and a field a setter wrote, win over the
//! environment (and a setter over the handover) whatever the value; a struct literal keeps
//! the old rule; a handover closes the transport to the environment. One test per source pair,
//! across the field types: string, bool, number, enum, map, list, path.
//!
//! Tests here change process environment variables, so they hold one lock for their duration.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::env::Env;
use tracing::info;
use tracing_subscriber::layer::SubscriberExt;
use zenml_otel::testing::OtlpReceiver;
use zenml_otel::{handover, Compression, OtelLogStoreConfig, Protocol, ZenmlOtelLayer};

/// An environment that disagrees with every default it can set.
const HOSTILE: &[(&str, &str)] = &[
    ("OTEL_SERVICE_NAME", "from-env"),
    ("OTEL_RESOURCE_ATTRIBUTES", "team=env"),
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "http://elsewhere.invalid:4318",
    ),
    ("OTEL_EXPORTER_OTLP_HEADERS", "x-env=meant-for-elsewhere"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
    ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
    ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "3"),
    ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/from-env/ca.pem"),
    ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/from-env/key.pem"),
    (
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        "/from-env/cert.pem",
    ),
    ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "2"),
    ("ZENML_OTEL_SPAN_FIELDS", "request_id"),
    ("ZENML_OTEL_SPOOL_DIR", "/from-env/spool"),
    (
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "http://elsewhere.invalid:4318/v1/metrics",
    ),
    (
        "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
        "x-env=meant-for-elsewhere",
    ),
    ("ZENML_OTEL_METRICS_INTERVAL_MILLIS", "250"),
];

/// The part of [`HOSTILE`] a layer can be built under (no TLS files, no `http/json`, no spool),
/// for the tests that export to a receiver.
const HOSTILE_BUILDABLE: &[(&str, &str)] = &[
    ("OTEL_SERVICE_NAME", "from-env"),
    ("OTEL_RESOURCE_ATTRIBUTES", "team=env"),
    ("OTEL_EXPORTER_OTLP_HEADERS", "x-env=meant-for-elsewhere"),
    ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
    ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "2"),
];

/// The environment lock with exactly `vars` set among [`HOSTILE`]'s and the handed-over
/// configuration's.
fn env(vars: &[(&str, &str)]) -> Env {
    let handed_over = [handover::LOG_STORE_CONFIG, handover::LOG_STORE_CONFIG_FILE];
    Env::with(
        HOSTILE.iter().map(|(name, _)| *name).chain(handed_over),
        vars,
    )
}

/// `vars` and `extra` as one list of pairs.
fn joined<'a>(
    vars: &[(&'a str, &'a str)],
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    vars.iter().chain(extra).copied().collect()
}

/// Every field the JSON below gives, at its default (the endpoint aside).
fn defaults_as_json(endpoint: &str) -> serde_json::Value {
    serde_json::json!({
        "endpoint": endpoint,
        "service_name": "zenml",
        "compression": "none",
        "max_export_batch_size": 512,
        "insecure": false,
        "headers": {},
        "resource_attributes": {},
        "span_fields": [],
    })
}

/// The fields [`defaults_as_json`] gives are at their defaults in `config`.
fn assert_at_defaults(config: &OtelLogStoreConfig, what: &str) {
    let default = OtelLogStoreConfig::default();
    assert_eq!(
        config.service_name, default.service_name,
        "{what}: service_name (string)"
    );
    assert_eq!(
        config.compression,
        Compression::None,
        "{what}: compression (enum)"
    );
    assert_eq!(
        config.max_export_batch_size, 512,
        "{what}: max_export_batch_size (number)"
    );
    assert!(!config.insecure, "{what}: insecure (bool)");
    assert!(config.headers.is_empty(), "{what}: headers (map)");
    assert!(
        config.resource_attributes.is_empty(),
        "{what}: resource_attributes (map)"
    );
    assert!(config.span_fields.is_empty(), "{what}: span_fields (list)");
}

/// Logs three records through a layer made from `config`, and shuts it down.
fn export_three(config: impl Into<zenml_otel::ExplicitConfig>, receiver: &OtlpReceiver) {
    let layer = ZenmlOtelLayer::new(config).expect("a valid config");
    let handle = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for n in 0..3 {
            info!(n, "record");
        }
    });
    handle.shutdown().unwrap();
    assert_eq!(receiver.records().len(), 3);
}

/// What the issue measured: one request of three plain records under service `zenml`, with
/// neither the environment's gzip, its batch of 2, its service name, headers or attributes.
fn assert_received_at_defaults(receiver: &OtlpReceiver) {
    let requests = receiver.requests();
    assert_eq!(
        requests.len(),
        1,
        "one request: the batch size is 512, not the environment's 2"
    );
    assert_eq!(requests[0].header("content-encoding"), None, "no gzip");
    assert_eq!(
        requests[0].header("x-env"),
        None,
        "no header from the environment"
    );
    for record in receiver.records() {
        assert_eq!(
            record.resource_attr("service.name").as_deref(),
            Some("zenml")
        );
        assert_eq!(record.resource_attr("team"), None);
    }
}

#[test]
fn a_handed_over_key_wins_over_the_environment_even_at_its_default() {
    let json = defaults_as_json("http://127.0.0.1:4318").to_string();
    let _env = env(&joined(HOSTILE, &[(handover::LOG_STORE_CONFIG, &json)]));
    let config = OtelLogStoreConfig::from_env().unwrap();
    assert_at_defaults(&config, "handover over environment");
}

#[test]
fn null_is_unset_for_every_field_type() {
    // ZenML writes `null` for an unset field: the environment, then the default, decide.
    let json = serde_json::json!({
        "service_name": null,
        "service_version": null,
        "max_export_batch_size": null,
        "on_full": null,
        "resource_attributes": null,
        "span_fields": null,
        "spool_dir": null,
    })
    .to_string();
    let _env = env(&joined(HOSTILE, &[(handover::LOG_STORE_CONFIG, &json)]));
    let config = OtelLogStoreConfig::from_env().unwrap();
    assert_eq!(config.service_name, "from-env");
    assert_eq!(config.service_version, "1.0.0");
    assert_eq!(config.max_export_batch_size, 2);
    assert_eq!(config.on_full, zenml_otel::OnFull::Drop);
    assert_eq!(config.resource_attributes["team"], "env");
    assert_eq!(config.span_fields, ["request_id"]);
    assert_eq!(config.spool_dir, Some(PathBuf::from("/from-env/spool")));
}

#[test]
fn the_issues_case_a_handover_at_the_defaults_reaches_the_collector_as_written() {
    let receiver = OtlpReceiver::start().unwrap();
    let json = serde_json::json!({
        "endpoint": receiver.logs_url(),
        "compression": "none",
        "max_export_batch_size": 512,
        "service_name": "zenml",
        "headers": {},
        "resource_attributes": {},
    })
    .to_string();
    let _env = env(&joined(
        HOSTILE_BUILDABLE,
        &[(handover::LOG_STORE_CONFIG, &json)],
    ));
    export_three(OtelLogStoreConfig::default(), &receiver);
    assert_received_at_defaults(&receiver);
}

#[test]
fn a_handover_closes_the_transport_to_the_environment() {
    let json = r#"{"service_version": "2.0.0"}"#;
    let _env = env(&joined(HOSTILE, &[(handover::LOG_STORE_CONFIG, json)]));
    let config = OtelLogStoreConfig::from_env().unwrap();
    let default = OtelLogStoreConfig::default();
    // The transport: from the handover or the defaults only.
    assert_eq!(config.endpoint, None);
    assert!(
        config.headers.is_empty(),
        "headers meant for another collector"
    );
    assert_eq!(config.protocol, default.protocol);
    assert_eq!(config.compression, default.compression);
    assert_eq!(config.insecure, default.insecure);
    assert_eq!(config.export_timeout_millis, default.export_timeout_millis);
    assert_eq!(config.certificate_file, None);
    assert_eq!(config.client_key_file, None);
    assert_eq!(config.client_certificate_file, None);
    assert_eq!(config.metrics_endpoint, None);
    assert!(config.metrics_headers.is_empty());
    // The rest still follows the environment.
    assert_eq!(config.metrics_interval_millis, 250);
    assert_eq!(config.service_version, "2.0.0");
    assert_eq!(config.service_name, "from-env");
    assert_eq!(config.max_export_batch_size, 2);
    assert_eq!(config.resource_attributes["team"], "env");
    assert_eq!(config.span_fields, ["request_id"]);
    assert_eq!(config.spool_dir, Some(PathBuf::from("/from-env/spool")));
}

#[test]
fn a_handover_without_an_endpoint_means_the_default_not_the_environments() {
    let _env = env(&[
        (handover::LOG_STORE_CONFIG, r#"{"service_name": "svc"}"#),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://elsewhere.invalid:4318",
        ),
    ]);
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig::default()).unwrap();
    assert_eq!(layer.endpoint(), "http://localhost:4318/v1/logs");
    layer.handle().shutdown().ok();
}

#[test]
fn a_file_key_wins_over_the_environment_even_at_its_default() {
    let receiver = OtlpReceiver::start().unwrap();
    let path = std::env::temp_dir().join(format!("zenml-otel-sources-{}.json", std::process::id()));
    std::fs::write(&path, defaults_as_json(&receiver.logs_url()).to_string()).unwrap();
    let _env = env(HOSTILE_BUILDABLE);
    let config = OtelLogStoreConfig::from_file(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    export_three(config, &receiver);
    assert_received_at_defaults(&receiver);
}

#[test]
fn a_setter_wins_over_the_environment_even_at_its_default() {
    let _env = env(HOSTILE);
    let config = OtelLogStoreConfig::default()
        .with_service_name("zenml".to_owned())
        .with_compression(Compression::None)
        .with_protocol(Protocol::HttpProtobuf)
        .with_max_export_batch_size(512)
        .with_export_timeout_millis(10_000)
        .with_insecure(false)
        .with_headers(HashMap::new())
        .with_resource_attributes(HashMap::new())
        .with_span_fields(Vec::new())
        .with_endpoint(None)
        .with_certificate_file(None)
        .with_spool_dir(None);
    let resolved = config.resolved().unwrap();
    assert_at_defaults(&resolved, "setter over environment");
    assert_eq!(resolved.protocol, Protocol::HttpProtobuf, "protocol (enum)");
    assert_eq!(
        resolved.export_timeout_millis, 10_000,
        "export_timeout_millis (number)"
    );
    assert_eq!(resolved.endpoint, None, "endpoint (optional string)");
    assert_eq!(resolved.certificate_file, None, "certificate_file (path)");
    assert_eq!(resolved.spool_dir, None, "spool_dir (path)");
    // What the setters left alone still follows the environment.
    assert_eq!(
        resolved.client_key_file,
        Some(PathBuf::from("/from-env/key.pem"))
    );
}

#[test]
fn a_setter_wins_over_the_handover_even_at_its_default() {
    let json = serde_json::json!({
        "service_name": "from-handover",
        "compression": "gzip",
        "max_export_batch_size": 2,
        "insecure": true,
        "headers": {"x-handover": "1"},
        "resource_attributes": {"team": "handover"},
        "span_fields": ["request_id"],
        "endpoint": "http://handover.invalid:4318",
        "certificate_file": "/from-handover/ca.pem",
        "spool_dir": "/from-handover/spool",
    })
    .to_string();
    let _env = env(&[(handover::LOG_STORE_CONFIG, &json)]);
    let config = OtelLogStoreConfig::default()
        .with_service_name("zenml".to_owned())
        .with_compression(Compression::None)
        .with_max_export_batch_size(512)
        .with_insecure(false)
        .with_headers(HashMap::new())
        .with_resource_attributes(HashMap::new())
        .with_span_fields(Vec::new())
        .with_endpoint(None)
        .with_certificate_file(None)
        .with_spool_dir(None);
    let resolved = config.resolved().unwrap();
    assert_at_defaults(&resolved, "setter over handover");
    assert_eq!(resolved.endpoint, None);
    assert_eq!(resolved.certificate_file, None);
    assert_eq!(resolved.spool_dir, None);
}

#[test]
fn a_struct_literal_field_at_its_default_still_counts_as_unset() {
    // The documented rule for plain struct literals: Rust cannot tell `Compression::None`
    // written from left out, so the environment fills it; a setter says "explicit".
    let _env = env(HOSTILE);
    let literal = OtelLogStoreConfig {
        compression: Compression::None,
        max_queue_size: 100,
        ..OtelLogStoreConfig::default()
    };
    let resolved = zenml_otel::ExplicitConfig::from(literal.clone())
        .resolved()
        .unwrap();
    assert_eq!(resolved.compression, Compression::Gzip);
    assert_eq!(
        resolved.max_queue_size, 100,
        "a value other than the default is given"
    );
    let explicit = literal
        .with_compression(Compression::None)
        .resolved()
        .unwrap();
    assert_eq!(explicit.compression, Compression::None);
}

#[test]
fn an_explicit_config_prints_no_header_value() {
    let config = OtelLogStoreConfig::default().with_headers(HashMap::from([(
        "authorization".to_owned(),
        "Bearer s3cret".to_owned(),
    )]));
    let shown = format!("{config:?}");
    assert!(shown.contains("authorization"), "{shown}");
    assert!(!shown.contains("s3cret"), "{shown}");
}

#[test]
fn a_handovers_metrics_go_to_the_handed_over_collector_not_the_environments() {
    let receiver = OtlpReceiver::start().unwrap();
    let json = serde_json::json!({ "endpoint": receiver.endpoint() }).to_string();
    let _env = env(&[
        (handover::LOG_STORE_CONFIG, &json),
        ("ZENML_OTEL_METRICS_INTERVAL_MILLIS", "20"),
        (
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "http://elsewhere.invalid:4318/v1/metrics",
        ),
        (
            "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
            "x-env=meant-for-elsewhere",
        ),
    ]);
    export_three(OtelLogStoreConfig::default(), &receiver);
    let metrics = receiver.metrics();
    assert!(
        !metrics.is_empty(),
        "the interval comes from the environment"
    );
    assert_eq!(metrics[0].path, "/v1/metrics", "the handed-over endpoint's");
    assert_eq!(
        metrics[0].header("x-env"),
        None,
        "no header from the environment"
    );
}

#[test]
fn the_metrics_fields_follow_the_sources_like_the_others() {
    // A setter at the default (off) wins over the environment's interval.
    let _env = env(HOSTILE);
    let config = OtelLogStoreConfig::default()
        .with_metrics_interval_millis(0)
        .resolved()
        .unwrap();
    assert_eq!(config.metrics_interval_millis, 0);
    let from_env = OtelLogStoreConfig::from_env().unwrap();
    assert_eq!(from_env.metrics_interval_millis, 250);
    assert_eq!(
        from_env.metrics_endpoint.as_deref(),
        Some("http://elsewhere.invalid:4318/v1/metrics")
    );
    assert_eq!(from_env.metrics_headers["x-env"], "meant-for-elsewhere");
    drop(_env);
    // A malformed or too large value is an error naming the variable.
    for value in ["soon", "86400001"] {
        let _env = env(&[("ZENML_OTEL_METRICS_INTERVAL_MILLIS", value)]);
        let error = OtelLogStoreConfig::from_env().unwrap_err();
        assert_eq!(
            error.field(),
            Some("ZENML_OTEL_METRICS_INTERVAL_MILLIS"),
            "{value}: {error}"
        );
    }
    // A bad metrics endpoint or header is named by its field.
    let bad = OtelLogStoreConfig {
        metrics_interval_millis: 100,
        metrics_endpoint: Some("ftp://metrics".into()),
        ..OtelLogStoreConfig::default()
    };
    let error = ZenmlOtelLayer::new(bad).unwrap_err();
    assert_eq!(error.field(), Some("metrics_endpoint"), "{error}");
    let bad = OtelLogStoreConfig {
        metrics_interval_millis: 100,
        metrics_headers: [("bad header".to_owned(), "v".to_owned())].into(),
        ..OtelLogStoreConfig::default()
    };
    let error = ZenmlOtelLayer::new(bad).unwrap_err();
    assert_eq!(error.field(), Some("metrics_headers"), "{error}");
}
