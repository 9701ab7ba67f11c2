//! Header values and key material never show in Debug/Display output, errors, or the crate's
//! own stderr lines.

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::certs::{write_temp, Ca};
use common::refused_endpoint;
use tracing::info;
use tracing_subscriber::layer::SubscriberExt;
use zenml_otel::{OtelLogStoreConfig, ZenmlOtelLayer};

const SECRET: &str = "s3cr3t-token-value";

fn secret_config(endpoint: String) -> OtelLogStoreConfig {
    OtelLogStoreConfig {
        endpoint: Some(endpoint),
        headers: HashMap::from([
            ("Authorization".into(), format!("Bearer {SECRET}")),
            ("x-api-key".into(), SECRET.into()),
        ]),
        export_timeout_millis: 500,
        // The flushes below fail once the retries are spent, not after force_flush's 30 s.
        max_retry_elapsed_millis: 1000,
        ..OtelLogStoreConfig::default()
    }
}

#[test]
#[cfg_attr(not(feature = "tls"), ignore = "needs the `tls` feature")]
fn debug_and_errors_show_no_secrets() {
    let client = Ca::new("client").client();
    let config = OtelLogStoreConfig {
        client_certificate_file: Some(write_temp("c.pem", &client.cert_pem)),
        client_key_file: Some(write_temp("c.key", &client.key_pem)),
        endpoint: Some("https://localhost:1".into()),
        ..secret_config(String::new())
    };
    let key_body = client.key_pem.lines().nth(1).unwrap().to_owned();
    let debug = format!("{config:?}");
    assert!(
        debug.contains("Authorization") && debug.contains("<redacted>"),
        "{debug}"
    );
    let layer = ZenmlOtelLayer::new(config).unwrap();
    let handle = layer.handle();
    let shown = format!("{debug} {layer:?} {handle:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(!shown.contains(&key_body), "key material in {shown}");

    let layer = ZenmlOtelLayer::new(secret_config(refused_endpoint())).unwrap();
    let handle = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        info!("goes nowhere")
    });
    let error = handle.force_flush().unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(SECRET), "{shown}");
}

/// Logs with secret headers to a refused port, so the crate writes its failure warning to
/// stderr; `stderr_lines_show_no_secrets` runs it in a child process to read that stderr.
#[test]
fn child_logs_with_secret_headers() {
    let layer = ZenmlOtelLayer::new(secret_config(refused_endpoint())).unwrap();
    let handle = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        info!("goes nowhere")
    });
    assert!(handle.force_flush().is_err(), "nothing listens there");
    handle.shutdown().expect("already reported by the flush");
}

#[test]
fn stderr_lines_show_no_secrets() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_logs_with_secret_headers",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stderr.contains("zenml-otel:") && stderr.contains("failed"),
        "the child should have warned about the failed export:\n{stderr}"
    );
    assert!(
        !stderr.contains(SECRET) && !stdout.contains(SECRET),
        "{stderr}"
    );
}
