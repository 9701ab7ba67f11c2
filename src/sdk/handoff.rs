//! The hand-off of an event's ZenML context from [`ZenmlContextLayer`](super::ZenmlContextLayer)
//! to [`ZenmlLogProcessor`](super::ZenmlLogProcessor): the bridge turns the event into a record
//! and the SDK runs the processors on the same thread, within the same `on_event` dispatch, so a
//! thread-local slot carries it, named by the event's callsite.

use std::cell::RefCell;
use std::sync::Arc;

use opentelemetry_sdk::logs::SdkLogRecord;
use tracing::Metadata;

use crate::span_context::Resolved;

thread_local! {
    static SLOT: RefCell<Option<(&'static Metadata<'static>, Arc<Resolved>)>> =
        const { RefCell::new(None) };
}

/// Leaves `resolved` for the record the bridge makes of the event at `meta`.
pub(super) fn put(meta: &'static Metadata<'static>, resolved: Arc<Resolved>) {
    let _ = SLOT.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            *slot = Some((meta, resolved));
        }
    });
}

/// The context left for `record`: taken when the record is the bridge's of the event it was
/// left for (same target and name), so a record logged another way never gets a stale one.
pub(super) fn take(record: &SdkLogRecord) -> Option<Arc<Resolved>> {
    SLOT.try_with(|slot| {
        let mut slot = slot.try_borrow_mut().ok()?;
        let (meta, _) = slot.as_ref()?;
        let same = record.target().map(|t| t.as_ref()) == Some(meta.target())
            && record.event_name() == Some(meta.name());
        same.then(|| slot.take().map(|(_, resolved)| resolved))?
    })
    .ok()
    .flatten()
}
