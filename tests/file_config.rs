//! Loading a ZenML `otel` log-store component's configuration from a file.

use std::io::Write;

use zenml_otel::{Compression, OtelLogStoreConfig};

fn file_with(contents: &str) -> std::path::PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("zenml-otel-cfg-{}-{n}.json", std::process::id()));
    std::fs::File::create(&path)
        .unwrap()
        .write_all(contents.as_bytes())
        .unwrap();
    path
}

#[test]
fn a_zenml_component_configuration_loads() {
    // The keys of ZenML 0.98's Python `otel` flavor, with its null for unset optionals.
    let path = file_with(
        r#"{
            "service_name": "zenml-pipelines",
            "service_version": "0.98.0",
            "max_queue_size": 4096,
            "schedule_delay_millis": 500,
            "max_export_batch_size": 256,
            "export_timeout_millis": 15000,
            "endpoint": "https://otel.example.com:4318",
            "headers": {"Authorization": "Bearer token123"},
            "certificate_file": null,
            "client_key_file": null,
            "client_certificate_file": null,
            "compression": "gzip"
        }"#,
    );
    let cfg = OtelLogStoreConfig::from_file(&path).unwrap();
    assert_eq!(cfg.service_name, "zenml-pipelines");
    assert_eq!(cfg.max_queue_size, 4096);
    assert_eq!(cfg.export_timeout_millis, 15000);
    assert_eq!(cfg.compression, Compression::Gzip);
    assert_eq!(cfg.headers["Authorization"], "Bearer token123");
    assert_eq!(
        cfg.endpoint.as_deref(),
        Some("https://otel.example.com:4318")
    );
    let _ = std::fs::remove_file(path);
}

#[test]
fn unknown_keys_and_bad_values_are_named() {
    let cases = [
        (r#"{"servce_name": "x"}"#, "servce_name"),
        (r#"{"compression": "deflate"}"#, "deflate"),
        (r#"{"protocol": "http/xml"}"#, "http/xml"),
        (r#"{"max_queue_size": -1}"#, "max_queue_size"),
        (r#"{"headers": "{not json"}"#, "JSON object"),
        ("not json at all", "expected"),
    ];
    for (contents, expected) in cases {
        let path = file_with(contents);
        let error = OtelLogStoreConfig::from_file(&path)
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{contents}: {error}");
        assert!(error.contains(&path.display().to_string()), "{error}");
        let _ = std::fs::remove_file(path);
    }
    let missing = OtelLogStoreConfig::from_file("/nonexistent/zenml.json").unwrap_err();
    assert!(missing.to_string().contains("cannot read"), "{missing}");
    // The I/O error is the cause, for reporters that print the chain, not folded into the text.
    let cause = std::error::Error::source(&missing).expect("the I/O error as the source");
    let io = cause
        .downcast_ref::<std::io::Error>()
        .expect("an io::Error");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    assert!(!missing.to_string().contains(&io.to_string()), "{missing}");
}
