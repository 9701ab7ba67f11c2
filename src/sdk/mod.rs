//! ZenML's context and delivery for programs that already run the official OpenTelemetry SDK
//! pipeline (`SdkLoggerProvider`, `opentelemetry-appender-tracing`'s bridge, their own
//! processors and exporters), instead of [`ZenmlOtelLayer`](crate::ZenmlOtelLayer)'s pipeline
//! of its own (feature `sdk`).
//!
//! - [`ZenmlContextLayer`]: a `tracing` layer that resolves the `zenml.*` span fields as
//!   `ZenmlOtelLayer` does (inheritance, values recorded later, a ZenML step's
//!   [`handover`](crate::handover) as the outermost context) and hands each event's context to
//!   the processor. Put it before `OpenTelemetryTracingBridge`.
//! - [`ZenmlLogProcessor`]: a `LogProcessor` that stamps every record with that context as
//!   record attributes (ZenML's `zenml.log.id`, `zenml.pipeline.run.id`, `zenml.step.run.id`,
//!   `zenml.log.source`, the handover's names and ids, and `zenml.pipeline_run_id`,
//!   `zenml.step_id`, `zenml.source`) and counts it for the receipt. Put it before the
//!   exporting processor.
//! - [`ZenmlLogExporter`]: a `LogExporter` on this crate's configuration, handover, transports,
//!   limits, retries and counts. It exports each record under its run's resource, as the layer
//!   does: `zenml.pipeline_run_id`, `zenml.step_id` and `zenml.source` move from the record to
//!   the resource, and the configuration's `service.*` win over the provider's. Any other
//!   exporter (opentelemetry-otlp's) keeps those three as record attributes: an SDK provider
//!   has one resource.
//!
//! ```no_run
//! use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
//! use opentelemetry_sdk::logs::{BatchLogProcessor, SdkLoggerProvider};
//! use tracing_subscriber::layer::SubscriberExt as _;
//! use tracing_subscriber::util::SubscriberInitExt as _;
//! use zenml_otel::sdk::{ZenmlContextLayer, ZenmlLogExporter, ZenmlLogProcessor};
//!
//! fn main() -> Result<(), zenml_otel::Error> {
//!     let exporter = ZenmlLogExporter::from_env()?;
//!     let provider = SdkLoggerProvider::builder()
//!         .with_log_processor(ZenmlLogProcessor::from_env()?)
//!         .with_log_processor(BatchLogProcessor::builder(exporter).build())
//!         .build();
//!     tracing_subscriber::registry()
//!         .with(ZenmlContextLayer::default())
//!         .with(OpenTelemetryTracingBridge::new(&provider))
//!         .init();
//!     tracing::info!("inside the step");
//!     let _ = provider.shutdown(); // exports what is queued, writes the receipt
//!     Ok(())
//! }
//! ```
//!
//! When to use which: [the guide](crate::_guide::sdk).

mod context_layer;
mod encode;
mod exporter;
mod handoff;
mod processor;
mod tally;

pub use context_layer::ZenmlContextLayer;
pub use exporter::ZenmlLogExporter;
pub use processor::ZenmlLogProcessor;
