//! What users hold: [`LogStoreHandle`] to flush, shut down and count, [`ShutdownGuard`] to do
//! it on drop, and [`ExportStats`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, RecvTimeoutError, Sender};

use super::{Control, Shared};
use crate::Error;

/// How long [`LogStoreHandle::force_flush`] waits for the export thread before giving up.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);
/// Slack over one export timeout that [`LogStoreHandle::shutdown`] allows.
const SHUTDOWN_SLACK: Duration = Duration::from_millis(200);

/// Counters of the records that went through the pipeline.
///
/// Once [`LogStoreHandle::force_flush`] or [`LogStoreHandle::shutdown`] has returned,
/// `emitted + recovered == exported + dropped + failed + rejected + spooled` for everything
/// emitted before the call (`recovered` and `spooled` are zero without a spool).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportStats {
    /// Events that became records.
    pub emitted: u64,
    /// Records the collector acknowledged.
    pub exported: u64,
    /// Records never sent: the queue was full, the pipeline was shut down, or shutdown's
    /// deadline passed before they could be.
    pub dropped: u64,
    /// Records sent in requests that failed after the exporter's retries (with a spool: that
    /// failed for good, as a collector refusing them; other failures leave them `spooled`).
    pub failed: u64,
    /// Records the collector answered as rejected in a partial success (over every protocol).
    pub rejected: u64,
    /// Records too large for any request (`max_export_batch_bytes`), exported with their
    /// longest strings cut to fit and marked with `zenml_otel.truncated_bytes`. They are also
    /// counted in `exported` (or whatever became of them): not a loss class of its own.
    pub truncated: u64,
    /// Distinct run/step/source contexts whose state is held now: by an open span or a queued
    /// record. Falls back to zero once their spans closed and their records were exported.
    pub live_runs: u64,
    /// Records a dead process left in the spool (`spool_dir`), sent by this pipeline before
    /// its own; their outcomes are counted with the others.
    pub recovered: u64,
    /// Segments of a dead process's spool that ended in a torn or corrupt entry (a kill
    /// mid-write), or could not be read at all: what they held before that was recovered.
    pub spool_torn: u64,
    /// Records only the spool holds now: this pipeline gave up on them in memory (the queue
    /// was full, or the retries ran out in a long outage) and sends them again from the spool
    /// once the queue has room and no request waits for a retry (and at a flush). Still
    /// `spooled` at shutdown: left in the spool, sent by the next start on it — so are the
    /// records shutdown's deadline left no time for (a hung collector): kept, not lost.
    pub spooled: u64,
    /// Records the spool could not take (it was full, or the disk refused a segment): they
    /// went on in memory only, as without a spool, and a kill meanwhile loses them. Also
    /// counted in their outcome: not a loss class of its own.
    pub unspooled: u64,
    /// With `metrics_interval_millis`: the layer's metrics requests the collector answered
    /// (counted apart from the records: a metrics failure never touches them).
    pub metric_exports: u64,
    /// With `metrics_interval_millis`: the layer's metrics requests that failed (or found
    /// no time left in shutdown's bound); each is complete in itself, so the next one makes
    /// up for a lost one.
    pub metric_export_failures: u64,
}

/// Controls a layer's export pipeline from anywhere: flush, shut down, read the counters.
///
/// Cheap to clone; every clone controls the same pipeline.
#[derive(Debug, Clone)]
pub struct LogStoreHandle {
    pub(super) control: Sender<Control>,
    pub(super) shared: Arc<Shared>,
}

impl LogStoreHandle {
    /// Exports every record emitted before this call and waits (at most 30 s) until each was
    /// acknowledged or failed. Returns an error if any export failed since the previous flush
    /// (whatever triggered that export), so `Ok` means nothing emitted before the call failed.
    ///
    /// Once the layer itself has been dropped, its export thread has already exported
    /// everything on the way out and this returns `Ok(())`; after [`shutdown`](Self::shutdown)
    /// it returns an error saying so.
    pub fn force_flush(&self) -> Result<(), Error> {
        self.flush_within(FLUSH_TIMEOUT)
    }

    /// [`force_flush`](Self::force_flush), waiting at most `timeout`.
    pub(crate) fn flush_within(&self, timeout: Duration) -> Result<(), Error> {
        let (ack, done) = bounded(1);
        if self.control.send(Control::Flush(ack)).is_err() {
            return self.after_stop();
        }
        match done.recv_timeout(timeout) {
            Ok(result) => result.map_err(Error::export),
            Err(RecvTimeoutError::Timeout) => Err(Error::timeout("force_flush")),
            // The export thread stopped before reading the request, after its last export.
            Err(RecvTimeoutError::Disconnected) => self.after_stop(),
        }
    }

    fn after_stop(&self) -> Result<(), Error> {
        if self.shared.stop.requested() {
            Err(Error::shut_down())
        } else {
            Ok(())
        }
    }

    /// Exports what is queued, then stops the export thread. Returns within the export timeout
    /// (`export_timeout_millis`) plus 200 ms, whatever the collector does. A collector that is
    /// unreachable meanwhile is retried (as at any other time, with waits cut short to fit)
    /// until that deadline, so one that comes back in time gets every record; what is not
    /// exported by then is counted as failed or dropped, as are records emitted afterwards.
    /// Calling it again returns `Ok(())` at once.
    pub fn shutdown(&self) -> Result<(), Error> {
        let bound = Instant::now() + self.shared.timeout + SHUTDOWN_SLACK;
        let result = self.stop_within_deadline();
        if let Some(spool) = &self.shared.spool {
            // Removed once all of it is acknowledged; else left for the next start.
            spool.close();
        }
        self.write_receipt();
        // The metrics' final export, of the final counts, in what is left of the bound.
        self.shared.at_shutdown(bound);
        result
    }

    /// Has [`shutdown`](Self::shutdown) write the final counters to `path`.
    pub(crate) fn report_stats_to(&self, path: std::path::PathBuf) {
        let _ = self.shared.stats_file.set(path);
    }

    /// Has `emitted` count what `tally` counts when that is more: records emitted before an
    /// SDK's own processor, which that processor may drop before they reach this pipeline;
    /// once shut down, those that never reached it count as dropped.
    #[cfg(feature = "sdk")]
    pub(crate) fn count_emitted_upstream(&self, tally: &'static std::sync::atomic::AtomicU64) {
        let _ = self.shared.ledger.upstream.set(tally);
    }

    /// Has every record that leaves the queue written to `fifo` too, for the step's console
    /// (`handover::CONSOLE_FIFO`).
    pub(crate) fn show_on_console(&self, fifo: std::path::PathBuf) {
        match crate::console::Console::start(fifo) {
            Ok(console) => {
                let _ = self.control.send(Control::Console(console));
            }
            Err(e) => eprintln!("zenml-otel: records are not shown on the step's console: {e}"),
        }
    }

    /// The counters after a shutdown, for whoever started the program.
    fn write_receipt(&self) {
        let Some(path) = self.shared.stats_file.get() else {
            return;
        };
        if let Err(error) = super::receipt::write(path, &self.stats()) {
            eprintln!(
                "zenml-otel: cannot write the final counters to {} ({}): {error}",
                path.display(),
                crate::handover::STATS_FILE
            );
        }
    }

    fn stop_within_deadline(&self) -> Result<(), Error> {
        let deadline = Instant::now() + self.shared.timeout;
        if !self.shared.stop.request(deadline) {
            return Ok(());
        }
        let (ack, done) = bounded(1);
        if self.control.send(Control::Shutdown(ack)).is_err() {
            return Ok(()); // the export thread already stopped on its own
        }
        let result = match done.recv_deadline(deadline + SHUTDOWN_SLACK) {
            Ok(result) => result.map_err(Error::export),
            Err(RecvTimeoutError::Timeout) => {
                // The export thread is stuck on a collector that does not answer: count what
                // it still holds and leave it to finish (or not) on its own.
                self.shared.close();
                let spool = self.shared.spool.is_some();
                let (lost, kept) = self.shared.ledger.abandon(&self.shared.records, spool);
                self.shared.warn(&format!(
                    "shutdown timed out; of the records still queued or in flight {kept} stay \
                     in the spool for the next start, {lost} are dropped"
                ));
                return Err(Error::timeout("shutdown"));
            }
            Err(RecvTimeoutError::Disconnected) => Ok(()),
        };
        let worker = crate::sync::lock(&self.shared.worker).take();
        if let Some(worker) = worker {
            // It has already answered, so this only waits for the thread to return.
            let _ = worker.join();
        }
        result
    }

    /// The pipeline's counters now.
    pub fn stats(&self) -> ExportStats {
        self.shared.stats()
    }

    /// A guard that shuts the pipeline down when dropped. See [`ShutdownGuard`].
    pub fn guard(&self) -> ShutdownGuard {
        ShutdownGuard {
            handle: self.clone(),
        }
    }
}

impl Shared {
    /// The counters now (`LogStoreHandle::stats`).
    pub(super) fn stats(&self) -> ExportStats {
        self.count_stragglers();
        let ledger = &self.ledger;
        let (emitted, dropped) = self.with_upstream(ledger.emitted.load(Ordering::Relaxed));
        ExportStats {
            emitted,
            exported: ledger.exported.load(Ordering::Relaxed),
            dropped,
            failed: ledger.failed.load(Ordering::Relaxed),
            rejected: ledger.rejected.load(Ordering::Relaxed),
            truncated: ledger.truncated.load(Ordering::Relaxed),
            live_runs: self.live_runs.load(Ordering::Relaxed),
            recovered: ledger.recovered.load(Ordering::Relaxed),
            spool_torn: self.spool_torn,
            spooled: ledger.parked(),
            unspooled: ledger.unspooled.load(Ordering::Relaxed),
            metric_exports: ledger.metric_exports.load(Ordering::Relaxed),
            metric_export_failures: ledger.metric_export_failures.load(Ordering::Relaxed),
        }
    }
}

impl Shared {
    /// `emitted` and `dropped`, with what an upstream processor saw (`count_emitted_upstream`):
    /// after shutdown, what it saw and this pipeline never got was lost before it.
    fn with_upstream(&self, emitted: u64) -> (u64, u64) {
        let dropped = self.ledger.dropped();
        let Some(seen) = self.ledger.upstream.get().map(|t| t.load(Ordering::SeqCst)) else {
            return (emitted, dropped);
        };
        let lost = if self.stop.requested() {
            seen.saturating_sub(emitted)
        } else {
            0
        };
        (emitted.max(seen), dropped + lost)
    }
}

/// Shuts the log store down when dropped, so queued records are exported before the process
/// exits (waiting at most the export timeout plus 200 ms).
///
/// Bind it to a named variable that lives as long as logging should: `let _guard = …;`.
/// `let _ = layer.guard();` drops it at once, shutting the pipeline down before anything is
/// logged — every later record is then counted as dropped.
#[must_use = "dropping the guard shuts the log store down at once; bind it with `let _guard = ...`"]
#[derive(Debug)]
pub struct ShutdownGuard {
    handle: LogStoreHandle,
}

impl ShutdownGuard {
    /// The handle of the pipeline this guard shuts down.
    pub fn handle(&self) -> &LogStoreHandle {
        &self.handle
    }
}

impl Drop for ShutdownGuard {
    fn drop(&mut self) {
        if let Err(error) = self.handle.shutdown() {
            eprintln!("zenml-otel: shutdown on guard drop: {error}");
        }
    }
}
