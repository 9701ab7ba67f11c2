//! Configure the log store from a ZenML `otel` log-store component's configuration file.
//!
//! `cargo run --example config_file [PATH]` (default: `examples/zenml-otel-store.json`) loads
//! the file, applies the environment to what it leaves at defaults, and logs one line. With no
//! endpoint in the file or the environment, it exports to the embedded receiver and prints
//! what arrived, headers included.

use std::time::Duration;

use tracing::info;
use tracing_subscriber::layer::SubscriberExt;
use zenml_otel::testing::OtlpReceiver;
use zenml_otel::{OtelLogStoreConfig, Protocol, ZenmlOtelLayer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/zenml-otel-store.json"
        )
        .to_owned()
    });
    let mut config = OtelLogStoreConfig::from_file(&path)?;
    // Header values are redacted in Debug output.
    println!("loaded {path}:\n{config:#?}");

    let in_env = [
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|v| !v.is_empty()));
    let receiver = if config.endpoint.is_none() && !in_env {
        let receiver = OtlpReceiver::start()?;
        config.endpoint = Some(match config.protocol {
            Protocol::Grpc => receiver.grpc_endpoint(),
            _ => receiver.endpoint(),
        });
        Some(receiver)
    } else {
        None
    };

    let layer = ZenmlOtelLayer::new(config)?;
    println!("exporting to {}", layer.endpoint());
    let handle = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        info!(config = %path, "configured from a file");
    });
    handle.shutdown()?;

    if let Some(receiver) = receiver {
        for request in receiver.requests() {
            println!(
                "received {:?} request, content-encoding {:?}, authorization {:?}",
                request.encoding,
                request.header("content-encoding"),
                request.header("authorization"),
            );
        }
        for record in receiver.wait_for_records(1, Duration::from_secs(5)) {
            println!(
                "{} (service.name {:?}, deployment.environment {:?})",
                record.body().unwrap_or_default(),
                record.resource_attr("service.name"),
                record.resource_attr("deployment.environment"),
            );
        }
    }
    Ok(())
}
