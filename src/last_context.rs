//! Each thread's last resolved context, keyed by the span it was resolved for. Most events come
//! from the span the thread's previous event came from; this spares them the registry lookups
//! and the extensions lock of resolving it again (one lookup, the current span's id, remains).

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use crate::span_context::{Resolved, Stamp};

struct Last {
    span: u64,
    stamp: Stamp,
    /// Weak: a cache must not keep a finished run's resource alive (`live_runs`).
    resolved: Weak<Resolved>,
}

thread_local! {
    static LAST: RefCell<Option<Last>> = const { RefCell::new(None) };
}

/// The context last remembered on this thread for `span`, if `stamp` still matches.
pub(crate) fn get(span: u64, stamp: Stamp) -> Option<Arc<Resolved>> {
    LAST.try_with(|last| match &*last.try_borrow().ok()? {
        Some(last) if last.span == span && last.stamp == stamp => last.resolved.upgrade(),
        _ => None,
    })
    .ok()
    .flatten()
}

/// Remembers `resolved` for `span`, resolved under `stamp` (taken before resolving, so a change
/// meanwhile leaves the entry stale rather than wrong).
pub(crate) fn remember(span: u64, stamp: Stamp, resolved: &Arc<Resolved>) {
    let _ = LAST.try_with(|last| {
        if let Ok(mut last) = last.try_borrow_mut() {
            *last = Some(Last {
                span,
                stamp,
                resolved: Arc::downgrade(resolved),
            });
        }
    });
}
