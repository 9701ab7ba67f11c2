//! Where every record's fate is written, exactly once: exported, dropped, failed or rejected
//! (or, with a spool, parked there until it is sent again or the process ends).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crossbeam_channel::Receiver;

use super::retry::ErrorType;
use super::QueuedRecord;

/// Why records were dropped, for the metrics' `error.type` (`src/metrics/names.rs`);
/// `ExportStats::dropped` is their sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// The queue was full (or, with `on_full = "block"`, stayed full).
    QueueFull,
    /// Emitted after the pipeline shut down (or while it was shutting down, past its last
    /// export).
    AlreadyShutdown,
    /// Shutdown's deadline passed before they could be sent.
    ShutdownDeadline,
}

impl DropReason {
    pub(crate) const ALL: [DropReason; 3] = [
        DropReason::QueueFull,
        DropReason::AlreadyShutdown,
        DropReason::ShutdownDeadline,
    ];
}

/// The counters, and the book that keeps the export thread and an abandoning `shutdown()` from
/// both counting the same records.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    pub(super) emitted: AtomicU64,
    pub(super) exported: AtomicU64,
    /// By `DropReason`, in its order.
    dropped: [AtomicU64; 3],
    pub(super) failed: AtomicU64,
    pub(super) rejected: AtomicU64,
    /// Records cut to fit a request: also counted in their outcome (not a loss class).
    pub(super) truncated: AtomicU64,
    /// Records a dead process left in the spool, sent by this one: counted besides `emitted`.
    pub(super) recovered: AtomicU64,
    /// Records the spool refused (full, a disk error), which went on in memory only: also
    /// counted in their outcome (not a loss class).
    pub(super) unspooled: AtomicU64,
    /// Records handed to an exporter (each time: a record sent again from the spool counts
    /// again), as `otel.sdk.processor.log.processed` counts them.
    pub(super) processed: AtomicU64,
    /// Records an exporter holds now, from when a sender hands them over until its export
    /// ends (`otel.sdk.exporter.log.inflight`).
    pub(super) exporting: AtomicU64,
    /// The metrics' own requests (`src/metrics`), counted apart from the records': answered
    /// by the collector, and failed.
    pub(super) metric_exports: AtomicU64,
    pub(super) metric_export_failures: AtomicU64,
    /// What a processor before this pipeline saw emitted (the `sdk` module's, in front of an
    /// SDK batch processor that may drop records this pipeline never sees).
    pub(super) upstream: std::sync::OnceLock<&'static AtomicU64>,
    book: Mutex<Book>,
}

#[derive(Debug, Default)]
struct Book {
    /// Records the export thread has taken from the queue and not yet settled.
    in_flight: u64,
    /// `shutdown()` gave up waiting and counted everything unsettled as dropped; the export
    /// thread counts nothing more.
    abandoned: bool,
    /// Records given up in memory (a full queue, retries spent) that only the spool holds:
    /// sent again from there, or left there for the next start (`ExportStats::spooled`).
    parked: u64,
    /// `failed` by the class of the failure.
    failed_by: BTreeMap<ErrorType, u64>,
}

/// How an export of `n` records ended.
#[derive(Debug, Clone, Copy)]
pub(super) enum Outcome {
    /// Acknowledged, with this many rejected in a partial success.
    Exported {
        rejected: u64,
    },
    Failed(ErrorType),
    /// Never sent (the shutdown deadline had passed).
    Dropped,
}

impl Ledger {
    /// Moves up to `max` records into `batch`, unless the pipeline was abandoned. Taking and
    /// marking them in flight is one step, so an abandoning `shutdown()` sees each record
    /// either in the queue or in flight, never in between.
    pub(super) fn take(
        &self,
        records: &Receiver<QueuedRecord>,
        batch: &mut Vec<QueuedRecord>,
        max: usize,
    ) -> bool {
        let mut book = crate::sync::lock(&self.book);
        if book.abandoned {
            return false;
        }
        let before = batch.len();
        batch.extend(records.try_iter().take(max.saturating_sub(before)));
        book.in_flight += (batch.len() - before) as u64;
        true
    }

    /// `n` records recovered from the spool are in flight.
    pub(super) fn recover(&self, n: u64) {
        let mut book = crate::sync::lock(&self.book);
        self.recovered.fetch_add(n, Ordering::Relaxed);
        if book.abandoned {
            book.parked += n; // still in the spool, for the next start
        } else {
            book.in_flight += n;
        }
    }

    /// `n` in-flight records failed for now; the spool keeps them.
    pub(super) fn park(&self, n: u64) {
        let mut book = crate::sync::lock(&self.book);
        if !book.abandoned {
            book.in_flight = book.in_flight.saturating_sub(n);
            book.parked += n;
        }
    }

    /// `n` records just emitted had no room in the queue; the spool keeps them.
    pub(super) fn park_new(&self, n: u64) {
        crate::sync::lock(&self.book).parked += n;
    }

    /// `n` parked records were read back from the spool and are in flight again.
    pub(super) fn unpark(&self, n: u64) {
        let mut book = crate::sync::lock(&self.book);
        book.parked = book.parked.saturating_sub(n);
        book.in_flight += n;
    }

    /// Records only the spool holds now.
    pub(super) fn parked(&self) -> u64 {
        crate::sync::lock(&self.book).parked
    }

    /// Counts `n` in-flight records as `outcome`, unless `shutdown()` already counted them.
    pub(super) fn settle(&self, n: u64, outcome: Outcome) {
        let mut book = crate::sync::lock(&self.book);
        if book.abandoned {
            return;
        }
        book.in_flight = book.in_flight.saturating_sub(n);
        match outcome {
            Outcome::Exported { rejected } => {
                let rejected = rejected.min(n);
                self.exported.fetch_add(n - rejected, Ordering::Relaxed);
                self.rejected.fetch_add(rejected, Ordering::Relaxed);
            }
            Outcome::Failed(error_type) => {
                self.failed.fetch_add(n, Ordering::Relaxed);
                *book.failed_by.entry(error_type).or_default() += n;
            }
            Outcome::Dropped => self.drop(DropReason::ShutdownDeadline, n),
        }
    }

    /// Whether `shutdown()` gave up on the export thread.
    pub(super) fn abandoned(&self) -> bool {
        crate::sync::lock(&self.book).abandoned
    }

    /// `shutdown()` stops waiting: whatever is in flight or still queued is counted here once,
    /// as kept (`spooled`: with a spool, for the next start) or dropped. Returns how many were
    /// dropped and kept.
    pub(super) fn abandon(&self, records: &Receiver<QueuedRecord>, spool: bool) -> (u64, u64) {
        let mut book = crate::sync::lock(&self.book);
        if book.abandoned {
            return (0, 0);
        }
        book.abandoned = true;
        let queued = records.try_iter().map(|queued| queued.spooled.is_some());
        let (kept, lost): (Vec<bool>, Vec<bool>) = queued.partition(|&spooled| spooled);
        // In flight, a record the spool refused cannot be told from one it holds: with a spool
        // they count as kept (a refusal already said they were at risk).
        let in_flight = std::mem::take(&mut book.in_flight);
        let (kept, lost) = if spool {
            (kept.len() as u64 + in_flight, lost.len() as u64)
        } else {
            (0, in_flight + (kept.len() + lost.len()) as u64)
        };
        book.parked += kept;
        self.drop(DropReason::ShutdownDeadline, lost);
        (lost, kept)
    }

    /// Counts `n` records dropped for `reason`.
    pub(super) fn drop(&self, reason: DropReason, n: u64) {
        self.dropped[reason as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Records dropped, for every reason.
    pub(super) fn dropped(&self) -> u64 {
        DropReason::ALL.iter().map(|&r| self.dropped_for(r)).sum()
    }

    pub(super) fn dropped_for(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].load(Ordering::Relaxed)
    }

    /// `failed` by the class of the failure.
    pub(super) fn failed_by(&self) -> Vec<(ErrorType, u64)> {
        let book = crate::sync::lock(&self.book);
        book.failed_by.iter().map(|(&t, &n)| (t, n)).collect()
    }
}
