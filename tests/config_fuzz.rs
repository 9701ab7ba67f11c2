//! Configuration parsing under arbitrary input — headers JSON, whole config documents, config
//! files and every environment variable: never a panic; a rejection always names what it
//! rejects and never echoes a header value. (proptest stands in for a fuzzer so CI runs it.)

use proptest::prelude::*;
use serde_json::{json, Value};
use zenml_otel::{OtelLogStoreConfig, ZenmlOtelLayer};

const KEYS: &[&str] = &[
    "service_name",
    "service_version",
    "deployment_environment",
    "endpoint",
    "headers",
    "insecure",
    "max_queue_size",
    "schedule_delay_millis",
    "max_export_batch_size",
    "protocol",
    "compression",
    "export_timeout_millis",
    "certificate_file",
    "client_certificate_file",
    "client_key_file",
    "resource_attributes",
    "on_full",
    "max_block_millis",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::from),
        Just(json!("http/json")),
        Just(json!("gzip")),
        Just(json!("http://127.0.0.1:4318")),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::hash_map(".{0,8}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn headers_json_never_panics_or_echoes(text in ".{0,200}") {
        if let Err(error) = OtelLogStoreConfig::headers_from_json(&text) {
            prop_assert_eq!(error.field(), Some("headers"));
            if text.len() > 8 {
                prop_assert!(!error.to_string().contains(&text));
            }
        }
    }

    #[test]
    fn arbitrary_documents_parse_or_name_the_key(
        entries in prop::collection::vec((prop::sample::select(KEYS), json_value()), 0..6),
        stray in prop::option::of("[a-z_]{1,12}"),
    ) {
        let mut doc: serde_json::Map<String, Value> =
            entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        if let Some(stray) = stray.filter(|s| !KEYS.contains(&s.as_str())) {
            doc.insert(stray, json!(1));
        }
        let text = Value::Object(doc.clone()).to_string();
        let path = std::env::temp_dir().join(format!("zenml-otel-fuzz-{}.json", std::process::id()));
        std::fs::write(&path, &text).unwrap();
        match OtelLogStoreConfig::from_file(&path) {
            Ok(config) => {
                // Whatever parsed either builds or is refused with a field name, never a panic.
                if let Err(error) = ZenmlOtelLayer::new(config) {
                    prop_assert!(error.field().is_some(), "{}", error);
                }
            }
            Err(error) => {
                let message = error.to_string();
                prop_assert!(
                    doc.keys().any(|k| message.contains(k.as_str())) || message.contains("expected"),
                    "{} for {}", message, text
                );
            }
        }
    }
}

/// Every variable the crate reads, given arbitrary values: `Ok`, or an error naming it (or the
/// field its value was rejected for). One test, so no other test sees these variables.
#[test]
fn environment_values_are_accepted_or_named() {
    const VARS: &[(&str, &str)] = &[
        ("OTEL_SERVICE_NAME", "service_name"),
        ("OTEL_RESOURCE_ATTRIBUTES", "resource_attributes"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "endpoint"),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "endpoint"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "headers"),
        ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "headers"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "protocol"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "export_timeout_millis"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "compression"),
        ("OTEL_EXPORTER_OTLP_INSECURE", "insecure"),
        ("OTEL_BLRP_MAX_QUEUE_SIZE", "max_queue_size"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "schedule_delay_millis"),
        ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "max_export_batch_size"),
        (
            "ZENML_LOGS_OTEL_EXPORT_TIMEOUT_MILLIS",
            "export_timeout_millis",
        ),
    ];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    });
    for &(var, field) in VARS {
        runner
            .run(&"[ -~]{0,30}", |value| {
                std::env::set_var(var, &value);
                let result = ZenmlOtelLayer::new(OtelLogStoreConfig::default());
                std::env::remove_var(var);
                if let Err(error) = result {
                    let named = error.field();
                    prop_assert!(
                        named == Some(var) || named == Some(field),
                        "{}={:?}: {}",
                        var,
                        value,
                        error
                    );
                    if var.contains("HEADERS") && value.len() > 8 {
                        prop_assert!(!error.to_string().contains(&value));
                    }
                }
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{var}: {e}"));
    }
}
