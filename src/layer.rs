//! [`ZenmlOtelLayer`]: turns every `tracing` event into an OpenTelemetry log record tagged with
//! the ZenML run, step and source of the spans it happened in.

use std::time::SystemTime;

use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent as _;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::batch::{self, Emitter, QueuedRecord};
use crate::panic_hook;
use crate::record::{self, AttributeLimits, RecordWriter};
use crate::span_context::{Runs, SpanFields, SpanState};
use crate::span_fields::{Allowlist, SpanValues};
use crate::{Error, LogStoreHandle, ShutdownGuard};

/// Crates on the export path. Their events are never exported, whatever filter the user sets:
/// exporting them would log the export of the export, forever.
const EXPORTER_CRATES: &[&str] = &[
    "hyper",
    "hyper_util",
    "h2",
    "ureq",
    "ureq_proto",
    "tonic",
    "tower",
    "rustls",
    "rustls_platform_verifier",
];

pub(crate) fn is_exporter_target(target: &str) -> bool {
    // Most targets start with another letter than any of these crates: one comparison.
    if !matches!(
        target.as_bytes().first(),
        Some(b'h' | b'o' | b'r' | b't' | b'u')
    ) {
        return false;
    }
    target.starts_with("opentelemetry")
        || EXPORTER_CRATES.iter().any(|name| {
            target
                .strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
}

/// A [`tracing_subscriber::Layer`] that exports every event as an OpenTelemetry log record over
/// OTLP (HTTP or gRPC), under a resource naming its ZenML pipeline run, step and source.
///
/// See the [crate docs](crate) for the field, resource and record mappings.
#[derive(Debug)]
pub struct ZenmlOtelLayer {
    runs: Runs,
    emitter: Emitter,
    handle: LogStoreHandle,
    instance_id: String,
    endpoint: String,
    limits: AttributeLimits,
    span_fields: Allowlist,
}

impl ZenmlOtelLayer {
    /// Applies a ZenML step's handover and the environment to the fields `config` does not
    /// give (see [`ExplicitConfig`](crate::ExplicitConfig)), validates everything, builds the
    /// OTLP exporter and starts the export threads.
    ///
    /// Fails with an [`Error`] naming the field when a value is unusable (an endpoint that is not
    /// an http(s) URL, zero sizes, a batch larger than the queue, a header HTTP refuses), or the
    /// variable when a ZenML step's [`handover`](crate::handover) is blank or malformed. Nothing
    /// is sent until an event is logged.
    pub fn new(config: impl Into<crate::ExplicitConfig>) -> Result<Self, Error> {
        let started = crate::pipeline::start(config.into())?;
        let base = started.resource(crate::pipeline::telemetry_attributes());
        let limits = started.limits();
        let crate::pipeline::Started {
            config,
            handover,
            emitter,
            handle,
            instance_id,
            endpoint,
        } = started;
        Ok(Self {
            runs: Runs::new(base, emitter.run_gauge(), handover.into()),
            emitter,
            handle,
            instance_id,
            endpoint,
            limits,
            span_fields: Allowlist::new(&config.span_fields),
        })
    }

    /// A handle to flush, shut down and read the counters of this layer's pipeline.
    pub fn handle(&self) -> LogStoreHandle {
        self.handle.clone()
    }

    /// A guard that shuts the pipeline down when dropped; keep it alive as `let _guard = …`.
    pub fn guard(&self) -> ShutdownGuard {
        self.handle.guard()
    }

    /// The `service.instance.id` of this layer's resources (a random UUID per layer).
    pub fn service_instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The URL logs are sent to: the full OTLP/HTTP logs URL, or the gRPC endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Values recorded later of the span fields to copy.
    fn record_copied<S>(&self, id: &Id, values: &Record<'_>, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let recorded = self.span_fields.capture(|visitor| values.record(visitor));
        if recorded.is_empty() {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        match extensions.get_mut::<SpanValues>() {
            Some(values) => values.update(recorded),
            None => extensions.insert(recorded),
        }
    }

    /// Copies the allowed span fields onto the record, innermost span first.
    fn copy_span_fields<S>(
        &self,
        record: &mut RecordWriter<'_>,
        event: &Event<'_>,
        ctx: &Context<'_, S>,
    ) where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        let mut copied = Vec::new();
        for span in scope {
            if let Some(values) = span.extensions().get::<SpanValues>() {
                values.copy_onto(record, &mut copied);
            }
        }
    }
}

impl<S> Layer<S> for ZenmlOtelLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        // Visit first, lock after: a field's Debug impl may itself look at span extensions
        // (tracing-error's SpanTrace does), which would deadlock under our lock.
        let mut own = SpanFields::default();
        attrs.record(&mut own);
        let copied = (!self.span_fields.is_empty())
            .then(|| self.span_fields.capture(|visitor| attrs.record(visitor)));
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        // Another instance of this layer may have got here first: the fields are the same.
        if extensions.get_mut::<SpanState>().is_none() {
            extensions.insert(SpanState::new(own));
        }
        if let Some(copied) = copied.filter(|values| !values.is_empty()) {
            if extensions.get_mut::<SpanValues>().is_none() {
                extensions.insert(copied);
            }
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if !self.span_fields.is_empty() {
            self.record_copied(id, values, &ctx);
        }
        crate::event_context::fields_recorded(&self.runs, id, values, &ctx);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.runs.span_closed();
        let Some(span) = ctx.span(&id) else { return };
        let ends_step = span
            .extensions()
            .get::<SpanState>()
            .is_some_and(|state| state.own.sets_step());
        if ends_step {
            self.emitter.step_ended();
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if batch::on_export_thread() {
            return;
        }
        // Events bridged from the `log` crate (tracing-log) all have the target "log"; the real
        // one, which the loop guard needs, is in their normalized metadata.
        let bridged = (event.metadata().target() == "log")
            .then(|| event.normalized_metadata())
            .flatten();
        let meta = bridged.as_ref().unwrap_or_else(|| event.metadata());
        if is_exporter_target(meta.target()) || self.emitter.drop_early() {
            return;
        }
        let now = record::nanos(SystemTime::now());
        let record = record::with_scratch(|scratch| {
            let mut record = RecordWriter::new(scratch, now, now);
            let (severity, text) = record::severity(meta.level());
            record
                .severity(severity, text)
                .limits(self.limits, bridged.is_some())
                .track_keys(!self.span_fields.is_empty());
            event.record(&mut record);
            if !self.span_fields.is_empty() {
                self.copy_span_fields(&mut record, event, &ctx);
            }
            match &bridged {
                // The panic record carries the panic's location, not the hook's.
                None => record.callsite(
                    event.metadata(),
                    event.metadata().target() != panic_hook::TARGET,
                ),
                Some(meta) => record.bridged_callsite(meta),
            }
            record.current_trace_context();
            record.finish(0)
        });
        let resolved = crate::event_context::context_of(&self.runs, event, &ctx);
        self.emitter.emit(QueuedRecord::new(resolved, record));
    }
}

#[cfg(test)]
mod tests {
    use super::is_exporter_target;

    #[test]
    fn exporter_targets_are_recognised_by_crate_boundary() {
        for target in [
            "hyper",
            "hyper::proto::h1",
            "hyper_util::client",
            "h2::codec",
            "ureq::unversioned::transport::tcp",
            "ureq_proto::client",
            "opentelemetry_sdk",
            "opentelemetry-otlp",
            "tonic::transport",
        ] {
            assert!(is_exporter_target(target), "{target}");
        }
        for name in super::EXPORTER_CRATES {
            assert!(is_exporter_target(name), "{name}");
            assert!(is_exporter_target(&format!("{name}::inner")), "{name}");
        }
        for target in ["hyperion", "my_app", "h2o::x", "step"] {
            assert!(!is_exporter_target(target), "{target}");
        }
    }
}
