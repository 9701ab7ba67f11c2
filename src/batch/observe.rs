//! What the layer's own metrics (`src/metrics`) read of the pipeline: the ledger's counters
//! and the queue's state, through a weak reference (a metrics thread never keeps a stopped
//! pipeline alive), and the hook through which `shutdown()` has them exported one last time.
//! Nothing here is on the logging threads' path: it reads counters the pipeline keeps anyway.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use super::ledger::DropReason;
use super::retry::ErrorType;
use super::{ExportStats, LogStoreHandle, Shared};

/// Reads a pipeline's counters for as long as it exists.
#[derive(Debug, Clone)]
pub(crate) struct Observer(Weak<Shared>);

/// The counters at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Observation {
    /// What `stats()` says now.
    pub(crate) stats: ExportStats,
    /// `stats.dropped`, by reason.
    pub(crate) dropped: [(DropReason, u64); 3],
    /// `stats.failed`, by the class of the failure.
    pub(crate) failed: Vec<(ErrorType, u64)>,
    /// Records handed to an exporter so far.
    pub(crate) processed: u64,
    /// Records an exporter holds now.
    pub(crate) exporting: u64,
    /// Records waiting in the queue now, and how many it holds at most.
    pub(crate) queued: u64,
    pub(crate) capacity: u64,
    /// Bytes the spool's files take, with a spool.
    pub(crate) spool_bytes: Option<u64>,
}

impl Observer {
    /// The counters now; `None` once the pipeline is gone.
    pub(crate) fn observe(&self) -> Option<Observation> {
        let shared = self.0.upgrade()?;
        let stats = shared.stats();
        let ledger = &shared.ledger;
        Some(Observation {
            stats,
            dropped: DropReason::ALL.map(|reason| (reason, ledger.dropped_for(reason))),
            failed: ledger.failed_by(),
            processed: ledger.processed.load(Ordering::Relaxed),
            exporting: ledger.exporting.load(Ordering::Relaxed),
            queued: shared.records.len() as u64,
            capacity: shared.records.capacity().unwrap_or(0) as u64,
            spool_bytes: shared.spool.as_ref().map(|spool| spool.bytes_on_disk()),
        })
    }

    /// Counts one of the metrics' own requests: apart from the records', in
    /// `ExportStats::metric_exports` and `metric_export_failures`.
    pub(crate) fn count_metric_export(&self, delivered: bool) {
        if let Some(shared) = self.0.upgrade() {
            let counter = if delivered {
                &shared.ledger.metric_exports
            } else {
                &shared.ledger.metric_export_failures
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What `shutdown()` runs once the records are counted (the metrics' last export), with the
/// deadline it must return by.
pub(crate) struct AtShutdown(pub(crate) Box<dyn Fn(Instant) + Send + Sync>);

impl fmt::Debug for AtShutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AtShutdown")
    }
}

impl Shared {
    /// Runs the shutdown hook, if any, within `deadline`.
    pub(super) fn at_shutdown(&self, deadline: Instant) {
        if let Some(hook) = self.at_shutdown.get() {
            (hook.0)(deadline);
        }
    }
}

impl LogStoreHandle {
    /// Reads this pipeline's counters without keeping it alive.
    pub(crate) fn observer(&self) -> Observer {
        Observer(Arc::downgrade(&self.shared))
    }

    /// Has `shutdown()` (or the pipeline's stop once every handle is gone) run `hook` after
    /// counting the records, within its deadline. Set once.
    pub(crate) fn at_shutdown(&self, hook: AtShutdown) {
        let _ = self.shared.at_shutdown.set(hook);
    }
}
