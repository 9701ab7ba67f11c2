//! [`ZenmlContextLayer`]: the `zenml.*` span fields, resolved as
//! [`ZenmlOtelLayer`](crate::ZenmlOtelLayer) resolves them, for the records another layer (the
//! official `OpenTelemetryTracingBridge`) makes of the events.

use opentelemetry_sdk::Resource;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::handover::Handover;
use crate::span_context::{Runs, SpanFields, SpanState};
use crate::Error;

/// A [`tracing_subscriber::Layer`] that resolves each event's ZenML context (its spans'
/// `zenml.*` fields, innermost first, values recorded later included, over a ZenML step's
/// [`handover`](crate::handover)) and leaves it for [`ZenmlLogProcessor`](super::ZenmlLogProcessor).
///
/// Add it to the subscriber before `OpenTelemetryTracingBridge` (layers see an event in the
/// order they were added). It exports nothing itself.
#[derive(Debug)]
pub struct ZenmlContextLayer {
    runs: Runs,
}

impl ZenmlContextLayer {
    /// A layer whose outermost context is the handover a ZenML step gave this process, if any.
    /// A blank or malformed handover is an error naming the variable.
    pub fn from_env() -> Result<Self, Error> {
        Handover::read(&crate::environ::process).map(Self::with_handover)
    }

    fn with_handover(handover: Handover) -> Self {
        // Only the records' attributes are taken from these runs: their resources stay empty.
        let runs = Runs::new(
            Resource::builder_empty().build(),
            Default::default(),
            handover.into(),
        );
        Self { runs }
    }
}

impl Default for ZenmlContextLayer {
    /// [`from_env`](Self::from_env); with a malformed handover, no handover: the same error
    /// is [`ZenmlLogProcessor::from_env`](super::ZenmlLogProcessor::from_env)'s, which
    /// returns it.
    fn default() -> Self {
        Self::from_env().unwrap_or_else(|_| Self::with_handover(Handover::default()))
    }
}

impl<S> Layer<S> for ZenmlContextLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        // Visit first, lock after: a field's Debug impl may look at span extensions itself.
        let mut own = SpanFields::default();
        attrs.record(&mut own);
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        // A `ZenmlOtelLayer` in the same subscriber may have got here first: the same fields.
        if extensions.get_mut::<SpanState>().is_none() {
            extensions.insert(SpanState::new(own));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        crate::event_context::fields_recorded(&self.runs, id, values, &ctx);
    }

    fn on_close(&self, _id: Id, _ctx: Context<'_, S>) {
        self.runs.span_closed();
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        // The SDK makes no record on the export threads (their context is suppressed).
        if crate::batch::on_export_thread() {
            return;
        }
        let resolved = crate::event_context::context_of(&self.runs, event, &ctx);
        super::handoff::put(event.metadata(), resolved);
    }
}
