//! [`ZenmlLogExporter`]: an SDK `LogExporter` that hands the SDK's batches to this crate's
//! pipeline (`batch.rs`): its configuration, handover, transports, limits, retries and counts,
//! under per-run resources.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::logs::AnyValue;
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::{LogBatch, LogExporter, SdkLogRecord};
use opentelemetry_sdk::Resource;

use super::encode;
use crate::batch::{Emitter, QueuedRecord};
use crate::handover::Handover;
use crate::pipeline::{self, Started};
use crate::record::AttributeLimits;
use crate::span_context::{Resolved, Runs, SpanFields};
use crate::{Error, ExplicitConfig, LogStoreHandle};

/// An [`opentelemetry_sdk::logs::LogExporter`] that sends where
/// [`ZenmlOtelLayer`](crate::ZenmlOtelLayer) would: the same configuration (fields, environment,
/// a ZenML step's handover, direct or through the step's relay), transports, limits, retries,
/// counters and receipt.
///
/// Each record goes under the resource of its run, as the layer's do: the provider's resource,
/// with the configuration's `service.*` and `deployment.environment*` winning, plus the
/// record's `zenml.pipeline_run_id`, `zenml.step_id` and `zenml.source` (which
/// [`ZenmlLogProcessor`](super::ZenmlLogProcessor) stamps), moved off the record. A record with
/// no ZenML attribute at all gets the handover's context, as the layer's records outside any
/// span do.
///
/// [`export`](LogExporter::export) queues the batch and waits until it is acknowledged or
/// failed (at most 30 s; retries as configured), so the SDK's batch processor is the one queue
/// that fills up when the collector is slow. Records of the export path's own crates (HTTP,
/// gRPC, TLS, OpenTelemetry) are never exported: they would log their own export.
#[derive(Debug)]
pub struct ZenmlLogExporter {
    started: Started,
    runs: Runs,
    limits: AttributeLimits,
}

impl ZenmlLogExporter {
    /// Configured by the environment and a ZenML step's handover only.
    pub fn from_env() -> Result<Self, Error> {
        Self::new(ExplicitConfig::default())
    }

    /// Applies a ZenML step's handover and the environment to the fields `config` does not give,
    /// validates everything and starts the export threads, as
    /// [`ZenmlOtelLayer::new`](crate::ZenmlOtelLayer::new) does (with the same errors).
    pub fn new(config: impl Into<ExplicitConfig>) -> Result<Self, Error> {
        let started = pipeline::start(config.into())?;
        started
            .handle
            .count_emitted_upstream(super::tally::emitted());
        let runs = runs_under(&started, pipeline::telemetry_attributes());
        let limits = started.limits();
        Ok(Self {
            started,
            runs,
            limits,
        })
    }

    /// A handle to flush, shut down and read the counters of this exporter's pipeline.
    pub fn handle(&self) -> LogStoreHandle {
        self.started.handle.clone()
    }

    /// The `service.instance.id` of this exporter's resources (a random UUID per exporter).
    pub fn service_instance_id(&self) -> &str {
        &self.started.instance_id
    }

    /// The URL logs are sent to: the full OTLP/HTTP logs URL, or the gRPC endpoint.
    pub fn endpoint(&self) -> &str {
        &self.started.endpoint
    }

    fn emitter(&self) -> &Emitter {
        &self.started.emitter
    }

    /// The context `record` is exported in: its run, from the ids it carries, looked up once
    /// per batch and run in `seen`.
    fn context_of<'b>(
        &self,
        record: &'b SdkLogRecord,
        seen: &mut Vec<(RunIds<'b>, Arc<Resolved>)>,
    ) -> Arc<Resolved> {
        let ids = RunIds::of(record);
        if let Some((_, context)) = seen.iter().find(|(known, _)| *known == ids) {
            return context.clone();
        }
        let context = match ids {
            RunIds {
                ids: [None, None, None],
                zenml: false,
            } => self.runs.outside().clone(),
            RunIds {
                ids: [run, step, source],
                ..
            } => {
                let owned = |id: Option<&str>| id.map(Arc::<str>::from);
                let run = self.runs.run_of(owned(run), owned(step), owned(source));
                Arc::new(Resolved::new(SpanFields::default(), run))
            }
        };
        seen.push((ids, context.clone()));
        context
    }
}

/// The three ids a record's run is selected by, as it carries them, and whether it has any
/// other `zenml.*` attribute (a record ZenML's processor saw, even outside every run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RunIds<'r> {
    ids: [Option<&'r str>; 3],
    zenml: bool,
}

impl<'r> RunIds<'r> {
    fn of(record: &'r SdkLogRecord) -> Self {
        let mut found = Self {
            ids: [None; 3],
            zenml: false,
        };
        for (key, value) in record.attributes_iter() {
            match (encode::run_key(key, value), value) {
                (Some(at), AnyValue::String(text)) => found.ids[at] = Some(text.as_str()),
                _ => found.zenml |= key.as_str().starts_with(crate::fields::PREFIX),
            }
        }
        found
    }
}

/// The runs of records exported under `under` (the provider's resource, or the SDK's telemetry
/// attributes before the provider gives one), over the handover's context.
fn runs_under(
    started: &Started,
    under: impl IntoIterator<Item = (opentelemetry::Key, opentelemetry::Value)>,
) -> Runs {
    let handover: Handover = started.handover.clone();
    Runs::new(
        started.resource(under),
        started.emitter.run_gauge(),
        handover.into(),
    )
}

fn sdk_error(error: Error) -> OTelSdkError {
    OTelSdkError::InternalFailure(error.to_string())
}

impl LogExporter for ZenmlLogExporter {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let mut seen = Vec::new();
        for (record, scope) in batch.iter() {
            self.queue(record, scope, &mut seen);
        }
        self.started.handle.force_flush().map_err(sdk_error)
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        // The pipeline's own bound: the export timeout plus 200 ms.
        self.started.handle.shutdown().map_err(sdk_error)
    }

    fn set_resource(&mut self, resource: &Resource) {
        let under: Vec<_> = resource
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.runs = runs_under(&self.started, under);
    }
}

impl ZenmlLogExporter {
    fn queue<'b>(
        &self,
        record: &'b SdkLogRecord,
        scope: &'b InstrumentationScope,
        seen: &mut Vec<(RunIds<'b>, Arc<Resolved>)>,
    ) {
        let target = encode::scope_name(record, scope);
        if crate::layer::is_exporter_target(target) || self.emitter().drop_early() {
            return;
        }
        let context = self.context_of(record, seen);
        let encoded = encode::record(record, scope, self.limits);
        self.emitter().emit(QueuedRecord::new(context, encoded));
    }
}
