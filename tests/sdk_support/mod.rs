//! Shared by the `sdk` module's tests (`tests/sdk*.rs`): the official OpenTelemetry pipeline
//! (`SdkLoggerProvider` with `ZenmlLogProcessor` before a `BatchLogProcessor`, the
//! `OpenTelemetryTracingBridge` after `ZenmlContextLayer`, `tracing-opentelemetry` alongside),
//! exporters to a receiver, and the process environment the handover is read from.
#![allow(dead_code)]

use crate::common::env::Env;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::logs::{BatchConfig, BatchLogProcessor, LogExporter, SdkLoggerProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt as _;
use zenml_otel::sdk::{ZenmlContextLayer, ZenmlLogExporter, ZenmlLogProcessor};
use zenml_otel::testing::{OtlpReceiver, ReceivedRecord};
use zenml_otel::{fields, handover, OtelLogStoreConfig};

pub const RUN: &str = "e44082a8-5006-4788-86e3-0c99ecfb36fe";
pub const STEP: &str = "3fa122bd-b946-4ce8-af22-67421f1fc97a";
pub const OTHER_STEP: &str = "9d2b1f7e-58a4-4b8e-9a43-0e0d1c2b3a4f";
pub const LOG: &str = "c56b45f8-66d7-41ca-a18f-d191fe71cc6b";

/// The official pipeline around `exporter`.
pub struct Official {
    pub logs: SdkLoggerProvider,
    pub traces: SdkTracerProvider,
    pub dispatch: Dispatch,
}

impl Official {
    pub fn new(exporter: impl LogExporter + 'static, resource: Resource) -> Self {
        Self::with_batch(exporter, resource, BatchConfig::default())
    }

    pub fn with_batch(
        exporter: impl LogExporter + 'static,
        resource: Resource,
        batch: BatchConfig,
    ) -> Self {
        let logs = SdkLoggerProvider::builder()
            .with_resource(resource)
            .with_log_processor(ZenmlLogProcessor::from_env().expect("a valid handover"))
            .with_log_processor(
                BatchLogProcessor::builder(exporter)
                    .with_batch_config(batch)
                    .build(),
            )
            .build();
        let traces = SdkTracerProvider::builder().build();
        let tracer = traces.tracer("sdk-tests");
        let dispatch = Dispatch::new(
            tracing_subscriber::registry()
                .with(ZenmlContextLayer::default())
                .with(tracing_opentelemetry::layer().with_tracer(tracer))
                .with(OpenTelemetryTracingBridge::new(&logs)),
        );
        Self {
            logs,
            traces,
            dispatch,
        }
    }

    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        tracing::dispatcher::with_default(&self.dispatch, f)
    }

    /// Exports what the SDK's batch processor holds (our exporter waits for the collector).
    pub fn flush(&self) {
        self.logs.force_flush().expect("force_flush");
    }
}

/// A provider's resource with a service name of its own and one attribute of the user's.
pub fn provider_resource() -> Resource {
    Resource::builder_empty()
        .with_service_name("provider-service")
        .with_attribute(opentelemetry::KeyValue::new("team", "data"))
        .build()
}

/// Our exporter to `receiver`, as `service.name` `zenml-sdk-test`.
pub fn zenml_exporter(receiver: &OtlpReceiver) -> ZenmlLogExporter {
    ZenmlLogExporter::new(OtelLogStoreConfig {
        endpoint: Some(receiver.endpoint()),
        service_name: "zenml-sdk-test".into(),
        ..OtelLogStoreConfig::default()
    })
    .expect("a valid configuration")
}

/// opentelemetry-otlp's HTTP/protobuf exporter to `logs_url`.
pub fn otlp_exporter(logs_url: &str) -> opentelemetry_otlp::LogExporter {
    opentelemetry_otlp::LogExporter::builder()
        .with_http()
        .with_endpoint(logs_url)
        .build()
        .expect("an opentelemetry-otlp exporter")
}

/// Variables besides the handover's that the tests set.
const OTHERS: &[&str] = &["OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"];

/// The environment lock with exactly `vars` set among the handover's and [`OTHERS`].
pub fn env(vars: &[(&str, &str)]) -> Env {
    Env::with(handover::ALL.iter().chain(OTHERS).copied(), vars)
}

/// A step's handover: its run, step, logs entry and names.
pub fn step_handover() -> Vec<(&'static str, &'static str)> {
    vec![
        (handover::PIPELINE_RUN_ID, RUN),
        (handover::STEP_RUN_ID, STEP),
        (handover::LOG_ID, LOG),
        (handover::LOG_SOURCE, "step"),
        (handover::STEP_RUN_NAME, "trainer"),
        (handover::PIPELINE_NAME, "training"),
    ]
}

/// What a record must carry to be found by ZenML as a step's record, as record attributes.
pub fn assert_zenml_record_ids(record: &ReceivedRecord, run: &str, step: &str, log: &str) {
    assert_eq!(
        record.attr_str(fields::RECORD_PIPELINE_RUN_ID).as_deref(),
        Some(run)
    );
    assert_eq!(
        record.attr_str(fields::RECORD_STEP_RUN_ID).as_deref(),
        Some(step)
    );
    assert_eq!(
        record.attr_str(fields::RECORD_LOG_SOURCE).as_deref(),
        Some("step")
    );
    assert_eq!(record.attr_str(fields::RECORD_LOG_ID).as_deref(), Some(log));
}
