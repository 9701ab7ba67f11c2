//! A sender thread: exports the batches (jobs) the coordinator hands it with its own exporter,
//! counts every record's outcome in the ledger, and reports to the coordinator's progress.
//! With more than one sender, the next batch is framed while the collector still works on the
//! last one.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crossbeam_channel::Receiver;

use super::ledger::Outcome;
use super::retry::Retry;
use super::{Export, QueuedRecord, Shared};

/// One batch of records, of any runs.
pub(super) struct Job {
    pub(super) records: Vec<QueuedRecord>,
    /// Its place in dispatch order, which retries keep.
    pub(super) seq: u64,
    /// The queue bytes its records hold until they are sent or counted (`max_queue_bytes`
    /// bounds records in flight too, not only those waiting).
    pub(super) bytes: usize,
}

/// What the coordinator and the senders share: jobs not yet finished, and the last failure not
/// yet reported to a flush or shutdown.
#[derive(Default)]
pub(super) struct Progress {
    state: Mutex<ProgressState>,
    idle: Condvar,
}

#[derive(Default)]
pub(super) struct ProgressState {
    pub(super) pending: usize,
    unreported_failure: Option<String>,
}

impl Progress {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, ProgressState> {
        crate::sync::lock(&self.state)
    }

    /// Waits until every job handed out so far is finished, then takes the failure to report:
    /// `Ok` means every record emitted before the call reached the collector or was counted.
    pub(super) fn settle(&self) -> Result<(), String> {
        let mut state = self.lock();
        while state.pending > 0 {
            state = crate::sync::wait(&self.idle, state);
        }
        state.unreported_failure.take().map_or(Ok(()), Err)
    }

    pub(super) fn finished(&self, failure: Option<String>) {
        let mut state = self.lock();
        state.pending -= 1;
        if failure.is_some() {
            state.unreported_failure = failure;
        }
        if state.pending == 0 {
            self.idle.notify_all();
        }
    }
}

/// A sender thread: exports the jobs it is handed with its own exporter.
pub(super) struct SenderThread {
    pub(super) transport: Box<dyn Export>,
    /// How long a request that failed with a retryable error is tried again.
    pub(super) retry_window: Duration,
    pub(super) jobs: Receiver<Job>,
    pub(super) shared: Arc<Shared>,
    pub(super) progress: Arc<Progress>,
}

impl SenderThread {
    pub(super) fn run(mut self) {
        super::mark_export_thread();
        while let Ok(mut job) = self.jobs.recv() {
            let failure = self.export(&mut job);
            // Before `finished`: a flush that returns must find the runs of exported records
            // released (`ExportStats::live_runs`).
            let (bytes, seq) = (job.bytes, job.seq);
            drop(job);
            self.shared.release_bytes(bytes);
            self.shared.order.close(seq);
            self.progress.finished(failure);
        }
        self.transport.shutdown();
    }

    /// Exports one job and counts its records; returns the last failure, if any.
    fn export(&mut self, job: &mut Job) -> Option<String> {
        let shared = &self.shared;
        let ledger = &shared.ledger;
        shared.outage.wait_behind_older(job.seq, &shared.stop);
        // Past shutdown's deadline the job is not sent: kept in the spool, else dropped.
        if shared.stop.passed() || ledger.abandoned() {
            shared.count_unsent(&job.records);
            return None;
        }
        let mut failure = None;
        let mut settled = 0;
        let window = self.retry_window;
        let seq = job.seq;
        let retry =
            || Retry::new(&shared.outage, seq, &shared.stop, window).in_order(&shared.order);
        let transport = &mut self.transport;
        // The records are processed, and the exporter's, until its export ends (the metrics').
        let n = job.records.len() as u64;
        ledger.processed.fetch_add(n, Ordering::Relaxed);
        ledger.exporting.fetch_add(n, Ordering::Relaxed);
        let export = std::panic::AssertUnwindSafe(|| {
            transport.export(
                &mut job.records,
                &mut |records, result| {
                    settled += records.len();
                    settle(shared, records, result, &mut failure);
                },
                &retry,
            )
        });
        let truncated = std::panic::catch_unwind(export).unwrap_or_else(|panic| {
            // Which records were settled is known only by number: the rest are counted failed
            // (a spool keeps them for the next start), and the sender goes on.
            let unsettled = job.records.len().saturating_sub(settled);
            let what = crate::sync::panic_message(panic.as_ref(), "no message");
            let message =
                format!("export of {unsettled} records failed: the exporter panicked: {what}");
            ledger.settle(
                unsettled as u64,
                Outcome::Failed(super::retry::ErrorType::Panic),
            );
            shared.warn(&message);
            failure = Some(message);
            0
        });
        ledger.exporting.fetch_sub(n, Ordering::Relaxed);
        ledger.truncated.fetch_add(truncated, Ordering::Relaxed);
        failure
    }
}

/// Counts one request's records by its fate; a failure the spool did not keep is remembered
/// in `failure`, for the next flush or shutdown to report.
fn settle(
    shared: &Shared,
    records: &[QueuedRecord],
    result: Result<u64, super::retry::Failure>,
    failure: &mut Option<String>,
) {
    let ledger = &shared.ledger;
    match result {
        Ok(rejected) => {
            let n = records.len();
            ledger.settle(n as u64, Outcome::Exported { rejected });
            // Answered: the collector has them (or refused them for good).
            if let Some(spool) = &shared.spool {
                spool.acknowledge(records.iter().filter_map(|queued| queued.spooled));
            }
            if rejected > 0 {
                shared.warn(&format!("the collector rejected {rejected} of {n} records"));
            }
        }
        // Kept in the spool, to be sent again: not a failure to report (yet).
        Err(error) => {
            if !shared.count_failed(records, &error) {
                *failure = Some(error.message);
            }
        }
    }
}
