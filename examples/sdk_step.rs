//! A ZenML step's program on the official OpenTelemetry SDK pipeline (`SdkLoggerProvider`,
//! `OpenTelemetryTracingBridge`, `tracing-opentelemetry` for traces) with this crate's `sdk`
//! module in it: `run_rust_step` starts it, and its records reach the step's log store (the
//! relay on the default stack, the `otel` store's collector directly) with ZenML's attributes,
//! and its receipt. python/tests/test_sdk_pipeline.py runs it in real pipelines.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_sdk::logs::{BatchLogProcessor, SdkLoggerProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{info, info_span, warn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use zenml_otel::sdk::{ZenmlContextLayer, ZenmlLogExporter, ZenmlLogProcessor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let logs = SdkLoggerProvider::builder()
        .with_log_processor(ZenmlLogProcessor::from_env()?)
        .with_log_processor(BatchLogProcessor::builder(ZenmlLogExporter::from_env()?).build())
        .build();
    let traces = SdkTracerProvider::builder().build();
    tracing_subscriber::registry()
        .with(ZenmlContextLayer::default())
        .with(tracing_opentelemetry::layer().with_tracer(traces.tracer("sdk-step")))
        .with(OpenTelemetryTracingBridge::new(&logs))
        .init();

    info!(threads = 2u64, "sdk: loading the features");
    let score = info_span!("fit", model = "linear").in_scope(|| {
        info!("sdk: fitting");
        0.5
    });
    warn!(score, "sdk: score below threshold");
    // Exports what the batch processor holds, then writes the receipt.
    logs.shutdown()?;
    Ok(())
}
