//! The context an event is logged in, resolved from its span's scope in the registry: shared by
//! [`ZenmlOtelLayer`](crate::ZenmlOtelLayer) and the `sdk` module's context layer, which track
//! the same `zenml.*` span fields the same way.

use std::sync::Arc;

use tracing::span::{Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use crate::last_context;
use crate::span_context::{Resolved, Resolver, Runs, SpanFields, SpanState};

/// The context of the event's span: this thread's last one when it is the same span, as it
/// mostly is (`last_context.rs`), else resolved.
pub(crate) fn context_of<S>(runs: &Runs, event: &Event<'_>, ctx: &Context<'_, S>) -> Arc<Resolved>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let current = if event.is_contextual() {
        ctx.current_span().id().map(Id::into_u64)
    } else {
        None
    };
    let stamp = runs.stamp();
    if let Some(hit) = current.and_then(|span| last_context::get(span, stamp)) {
        return hit;
    }
    let resolved = match ctx.event_span(event) {
        Some(span) => resolve(runs, &span),
        None => runs.outside().clone(),
    };
    if let Some(span) = current {
        last_context::remember(span, stamp, &resolved);
    }
    resolved
}

fn resolve<S>(runs: &Runs, span: &SpanRef<'_, S>) -> Arc<Resolved>
where
    S: for<'a> LookupSpan<'a>,
{
    if let Some(resolved) = span
        .extensions()
        .get::<SpanState>()
        .and_then(|state| runs.cached(state))
    {
        return resolved.clone();
    }
    let generation = runs.generation();
    let mut resolver = Resolver::default();
    for ancestor in span.scope() {
        let extensions = ancestor.extensions();
        if let Some(state) = extensions.get::<SpanState>() {
            if !resolver.visit(runs, state) {
                break;
            }
        }
    }
    let resolved = resolver.finish(runs);
    if let Some(state) = span.extensions_mut().get_mut::<SpanState>() {
        runs.cache(state, generation, resolved.clone());
    }
    resolved
}

/// `zenml.*` values recorded later on a span: its own fields updated, every cached context
/// stale (its descendants' included).
pub(crate) fn fields_recorded<S>(runs: &Runs, id: &Id, values: &Record<'_>, ctx: &Context<'_, S>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let mut recorded = SpanFields::default();
    values.record(&mut recorded);
    if recorded.is_empty() {
        return;
    }
    let Some(span) = ctx.span(id) else { return };
    if let Some(state) = span.extensions_mut().get_mut::<SpanState>() {
        state.own.update(recorded);
    }
    runs.fields_changed();
}
