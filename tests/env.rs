//! Configuration from the environment: explicit config > environment > defaults, one test per
//! row of the precedence table (docs/configuration.md), and every malformed value named.
//!
//! Tests here change process environment variables, so they hold one lock for their duration.

mod common;

use std::collections::HashMap;

use common::env::Env;
use common::{by_body, Harness};
use tracing::{info, info_span};
use zenml_otel::{Compression, OtelLogStoreConfig, Protocol, ZenmlOtelLayer};

const VARS: &[&str] = &[
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION",
    "OTEL_EXPORTER_OTLP_INSECURE",
    "OTEL_EXPORTER_OTLP_LOGS_INSECURE",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE",
    "OTEL_BLRP_MAX_QUEUE_SIZE",
    "OTEL_BLRP_SCHEDULE_DELAY",
    "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BLRP_EXPORT_TIMEOUT",
    "ZENML_LOGS_OTEL_MAX_QUEUE_SIZE",
    "ZENML_LOGS_OTEL_SCHEDULE_DELAY_MILLIS",
    "ZENML_LOGS_OTEL_MAX_EXPORT_BATCH_SIZE",
    "ZENML_LOGS_OTEL_EXPORT_TIMEOUT_MILLIS",
    "ZENML_OTEL_MAX_EXPORT_BATCH_BYTES",
    "ZENML_OTEL_MAX_RETRY_ELAPSED_MILLIS",
    "OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_ATTRIBUTE_COUNT_LIMIT",
    "ZENML_OTEL_MAX_QUEUE_BYTES",
    "ZENML_OTEL_SPAN_FIELDS",
    "ZENML_OTEL_SPOOL_SYNC_MILLIS",
    "ZENML_OTEL_SPOOL_DIR",
    "ZENML_OTEL_PIPELINE_RUN_ID",
];

/// The environment lock with exactly `vars` set among [`VARS`].
fn env(vars: &[(&str, &str)]) -> Env {
    Env::with(VARS.iter().copied(), vars)
}

#[test]
fn defaults_when_nothing_is_set() {
    let _env = env(&[]);
    assert_eq!(
        OtelLogStoreConfig::from_env().unwrap(),
        OtelLogStoreConfig::default()
    );
}

#[test]
fn environment_fills_every_field_left_at_its_default() {
    let _env = env(&[
        ("OTEL_SERVICE_NAME", "svc"),
        ("OTEL_RESOURCE_ATTRIBUTES", "team=ml,region=eu%2Dwest"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%20abc,x-tenant=t1",
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/ca.pem"),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/key.pem"),
        ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/cert.pem"),
        ("OTEL_BLRP_MAX_QUEUE_SIZE", "100"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "200"),
        ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "50"),
    ]);
    let cfg = OtelLogStoreConfig::from_env().unwrap();
    assert_eq!(cfg.service_name, "svc");
    assert_eq!(cfg.resource_attributes["team"], "ml");
    assert_eq!(cfg.resource_attributes["region"], "eu-west");
    assert_eq!(cfg.headers["authorization"], "Bearer abc");
    assert_eq!(cfg.headers["x-tenant"], "t1");
    assert_eq!(cfg.protocol, Protocol::HttpJson);
    assert_eq!(cfg.export_timeout_millis, 2500);
    assert_eq!(cfg.compression, Compression::Gzip);
    assert!(cfg.insecure);
    assert_eq!(cfg.certificate_file.as_deref(), Some("/ca.pem".as_ref()));
    assert_eq!(cfg.client_key_file.as_deref(), Some("/key.pem".as_ref()));
    assert_eq!(
        cfg.client_certificate_file.as_deref(),
        Some("/cert.pem".as_ref())
    );
    assert_eq!(cfg.max_queue_size, 100);
    assert_eq!(cfg.schedule_delay_millis, 200);
    assert_eq!(cfg.max_export_batch_size, 50);
}

#[test]
fn signal_specific_variables_win_over_generic_ones_and_zenml_over_otel() {
    let _env = env(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "zstd"),
        ("OTEL_BLRP_MAX_QUEUE_SIZE", "100"),
        ("ZENML_LOGS_OTEL_MAX_QUEUE_SIZE", "300"),
        ("OTEL_BLRP_EXPORT_TIMEOUT", "1000"),
        ("ZENML_LOGS_OTEL_EXPORT_TIMEOUT_MILLIS", "3000"),
        ("ZENML_LOGS_OTEL_SCHEDULE_DELAY_MILLIS", "40"),
        ("ZENML_LOGS_OTEL_MAX_EXPORT_BATCH_SIZE", "30"),
    ]);
    let cfg = OtelLogStoreConfig::from_env().unwrap();
    assert_eq!(cfg.protocol, Protocol::Grpc);
    assert_eq!(cfg.compression, Compression::Zstd);
    assert_eq!(cfg.max_queue_size, 300);
    assert_eq!(cfg.export_timeout_millis, 3000);
    assert_eq!(cfg.schedule_delay_millis, 40);
    assert_eq!(cfg.max_export_batch_size, 30);
}

#[test]
fn explicit_config_wins_over_the_environment() {
    let _env = env(&[
        ("OTEL_SERVICE_NAME", "from-env"),
        ("OTEL_BLRP_MAX_QUEUE_SIZE", "100"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=from-env,x-env-only=1",
        ),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
    ]);
    // Over the wire: the explicit endpoint and headers are what the collector sees.
    let harness = Harness::with(OtelLogStoreConfig {
        service_name: "explicit".into(),
        headers: HashMap::from([("authorization".into(), "from-config".into())]),
        ..OtelLogStoreConfig::default()
    });
    harness.run(|| info!("precedence"));
    let records = harness.flushed();
    let record = by_body(&records, "precedence");
    assert_eq!(
        record.resource_attr("service.name").as_deref(),
        Some("explicit")
    );
    for request in harness.receiver.requests() {
        assert_eq!(request.header("authorization"), Some("from-config"));
        assert_eq!(
            request.header("x-env-only"),
            None,
            "explicit headers replace the environment's"
        );
    }
}

#[test]
fn headers_from_the_environment_reach_the_collector() {
    let _env = env(&[("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "x-api-key=k%3D1")]);
    let harness = Harness::new();
    harness.run(|| info!("env headers"));
    harness.handle.force_flush().unwrap();
    for request in harness.receiver.requests() {
        assert_eq!(request.header("x-api-key"), Some("k=1"));
    }
    assert!(!harness.receiver.requests().is_empty());
}

#[test]
fn endpoint_variables_follow_the_spec() {
    let _env = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]);
    assert_eq!(
        ZenmlOtelLayer::new(OtelLogStoreConfig::default())
            .unwrap()
            .endpoint(),
        "http://collector:4318/v1/logs"
    );
    std::env::set_var(
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        "http://logs:1/custom/path",
    );
    assert_eq!(
        ZenmlOtelLayer::new(OtelLogStoreConfig::default())
            .unwrap()
            .endpoint(),
        "http://logs:1/custom/path"
    );
    let explicit = OtelLogStoreConfig {
        endpoint: Some("http://explicit:4318".into()),
        ..OtelLogStoreConfig::default()
    };
    assert_eq!(
        ZenmlOtelLayer::new(explicit).unwrap().endpoint(),
        "http://explicit:4318/v1/logs"
    );
}

#[test]
#[cfg_attr(not(feature = "grpc"), ignore = "needs the `grpc` feature")]
fn a_scheme_less_grpc_endpoint_from_the_environment_follows_insecure() {
    let _env = env(&[
        ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "collector:4317"),
        ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
    ]);
    assert_eq!(
        ZenmlOtelLayer::new(OtelLogStoreConfig::default())
            .unwrap()
            .endpoint(),
        "http://collector:4317"
    );
}

#[test]
fn resource_attributes_from_the_environment_yield_to_service_fields_and_run_keys() {
    let _env = env(&[(
        "OTEL_RESOURCE_ATTRIBUTES",
        "team=ml,service.version=9.9,zenml.step_id=bogus,zenml.pipeline_run_id=bogus",
    )]);
    let harness = Harness::new();
    harness.run(|| {
        let run = info_span!("run", zenml.pipeline_run_id = "real-run");
        let _r = run.enter();
        info!("orchestrator line");
    });
    let records = harness.flushed();
    let record = by_body(&records, "orchestrator line");
    assert_eq!(record.resource_attr("team").as_deref(), Some("ml"));
    assert_eq!(
        record.resource_attr("service.version").as_deref(),
        Some("1.0.0")
    );
    assert_eq!(
        record.resource_attr("zenml.pipeline_run_id").as_deref(),
        Some("real-run")
    );
    assert_eq!(record.resource_attr("zenml.step_id"), None);
}

#[test]
fn every_malformed_variable_is_named() {
    let cases = [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/xml"),
        ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "smtp"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "deflate"),
        ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "brotli"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
        ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "-1"),
        ("OTEL_EXPORTER_OTLP_INSECURE", "yes"),
        ("OTEL_EXPORTER_OTLP_LOGS_INSECURE", "1"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "no-equals-sign"),
        ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "a=%zz"),
        ("OTEL_RESOURCE_ATTRIBUTES", "=nokey"),
        ("OTEL_BLRP_MAX_QUEUE_SIZE", "many"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "1.5"),
        ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "-3"),
        ("OTEL_BLRP_EXPORT_TIMEOUT", "soon"),
        ("ZENML_LOGS_OTEL_MAX_QUEUE_SIZE", "x"),
        ("ZENML_LOGS_OTEL_SCHEDULE_DELAY_MILLIS", "x"),
        ("ZENML_LOGS_OTEL_MAX_EXPORT_BATCH_SIZE", "x"),
        ("ZENML_LOGS_OTEL_EXPORT_TIMEOUT_MILLIS", "x"),
        ("ZENML_OTEL_MAX_EXPORT_BATCH_BYTES", "4MB"),
        ("ZENML_OTEL_MAX_RETRY_ELAPSED_MILLIS", "5m"),
        ("OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT", "long"),
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "-1"),
        ("OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT", "1e3"),
        ("OTEL_ATTRIBUTE_COUNT_LIMIT", "x"),
        ("ZENML_OTEL_MAX_QUEUE_BYTES", "64MiB"),
        ("ZENML_OTEL_SPOOL_SYNC_MILLIS", "1s"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url"),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "ftp://x"),
    ];
    for (name, value) in cases {
        let _env = env(&[(name, value)]);
        let error = ZenmlOtelLayer::new(OtelLogStoreConfig::default())
            .expect_err(&format!("{name}={value} should be rejected"));
        assert_eq!(error.field(), Some(name), "{error}");
        assert!(error.to_string().contains(name), "{error}");
    }
}

#[test]
fn a_value_that_is_not_utf8_is_an_error_naming_the_variable_not_an_unset_one() {
    use std::os::unix::ffi::OsStrExt;
    for name in [
        "ZENML_OTEL_SPOOL_DIR",
        "OTEL_SERVICE_NAME",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "ZENML_OTEL_PIPELINE_RUN_ID",
    ] {
        let _env = env(&[]);
        std::env::set_var(name, std::ffi::OsStr::from_bytes(b"/tmp/spool-\xff"));
        let error = ZenmlOtelLayer::new(OtelLogStoreConfig::default())
            .expect_err(&format!("a non-UTF-8 {name} should be refused"));
        assert_eq!(error.field(), Some(name), "{error}");
        assert!(error.to_string().contains("UTF-8"), "{error}");
    }
}

#[test]
fn numbers_beyond_reason_are_refused_by_name_before_anything_is_allocated() {
    let cases = [
        ("OTEL_BLRP_MAX_QUEUE_SIZE", "100000000000"),
        ("ZENML_LOGS_OTEL_MAX_QUEUE_SIZE", "4194305"),
        ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "100000000000"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "18446744073709551615"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "18446744073709551615"),
        ("ZENML_OTEL_MAX_RETRY_ELAPSED_MILLIS", "86400001"),
        ("ZENML_OTEL_SPOOL_SYNC_MILLIS", "18446744073709551615"),
        ("OTEL_BLRP_MAX_QUEUE_SIZE", "99999999999999999999999"),
    ];
    for (name, value) in cases {
        let _env = env(&[(name, value)]);
        let error = ZenmlOtelLayer::new(OtelLogStoreConfig::default())
            .expect_err(&format!("{name}={value} should be rejected"));
        assert_eq!(error.field(), Some(name), "{error}");
    }
    let _env = env(&[]);
    let error = ZenmlOtelLayer::new(OtelLogStoreConfig {
        max_queue_size: 100_000_000_000,
        ..OtelLogStoreConfig::default()
    })
    .unwrap_err();
    assert_eq!(error.field(), Some("max_queue_size"), "{error}");
}

#[test]
fn a_value_in_the_environment_that_validation_rejects_is_named_by_field() {
    let _env = env(&[("OTEL_BLRP_MAX_QUEUE_SIZE", "0")]);
    let error = ZenmlOtelLayer::new(OtelLogStoreConfig::default()).unwrap_err();
    assert_eq!(error.field(), Some("max_queue_size"), "{error}");
}

#[test]
fn the_size_limit_and_the_retry_window_come_from_the_environment() {
    let _env = env(&[
        ("ZENML_OTEL_MAX_EXPORT_BATCH_BYTES", "1048576"),
        ("ZENML_OTEL_MAX_RETRY_ELAPSED_MILLIS", "60000"),
    ]);
    let config = OtelLogStoreConfig::from_env().unwrap();
    assert_eq!(config.max_export_batch_bytes, 1_048_576);
    assert_eq!(config.max_retry_elapsed_millis, 60_000);
    drop(_env);
    let _env = env(&[("ZENML_OTEL_MAX_RETRY_ELAPSED_MILLIS", "0")]);
    let error = ZenmlOtelLayer::new(OtelLogStoreConfig::default()).unwrap_err();
    assert_eq!(error.field(), Some("max_retry_elapsed_millis"), "{error}");
}

#[test]
fn the_log_record_attribute_limits_win_over_the_general_ones() {
    let _env = env(&[
        ("OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT", "100"),
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "10"),
        ("OTEL_ATTRIBUTE_COUNT_LIMIT", "16"),
    ]);
    let config = OtelLogStoreConfig::from_env().unwrap();
    assert_eq!(config.attribute_value_length_limit, Some(100));
    assert_eq!(config.attribute_count_limit, 16);
}

#[test]
fn span_fields_to_copy_come_from_the_environment_and_bad_names_are_named() {
    let _env = env(&[("ZENML_OTEL_SPAN_FIELDS", " request_id, ,user ")]);
    let config = OtelLogStoreConfig::from_env().unwrap();
    assert_eq!(config.span_fields, ["request_id", "user"]);
    drop(_env);
    let _env = env(&[("ZENML_OTEL_SPAN_FIELDS", "request_id,zenml.step_id")]);
    let error = ZenmlOtelLayer::new(OtelLogStoreConfig::default()).unwrap_err();
    assert_eq!(error.field(), Some("ZENML_OTEL_SPAN_FIELDS"), "{error}");
    assert!(error.to_string().contains("zenml.step_id"), "{error}");
}
