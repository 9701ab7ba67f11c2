//! Registry + the official bridge, exporting one record over OTLP/HTTP.
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let exporter = opentelemetry_otlp::LogExporter::builder()
        .with_http()
        .with_endpoint("http://127.0.0.1:4318/v1/logs")
        .with_compression(opentelemetry_otlp::Compression::Gzip)
        .build()?;
    let provider = SdkLoggerProvider::builder()
        .with_batch_exporter(exporter)
        .build();
    tracing_subscriber::registry()
        .with(OpenTelemetryTracingBridge::new(&provider))
        .init();
    tracing::info!(step = "trainer", "hello");
    provider.shutdown()?;
    Ok(())
}
