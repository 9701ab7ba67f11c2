//! The export thread: takes records from the queue in batches, groups them by run and exports
//! each group under its run's resource.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::logs::{LogBatch, SdkLogRecord};

use super::ledger::Outcome;
use super::{Control, QueuedRecord, Shared};
use crate::exporter::Transport;

pub(super) struct Worker {
    pub(super) transport: Transport,
    pub(super) scope: InstrumentationScope,
    pub(super) records: Receiver<QueuedRecord>,
    pub(super) control: Receiver<Control>,
    pub(super) batch: Vec<QueuedRecord>,
    pub(super) max_batch: usize,
    pub(super) delay: Duration,
    pub(super) timeout: Duration,
    pub(super) shared: Arc<Shared>,
    /// The last export failure not yet reported to a flush or shutdown.
    pub(super) unreported_failure: Option<String>,
}

impl Worker {
    pub(super) fn run(mut self) {
        let mut tick = Instant::now() + self.delay;
        loop {
            // Only control messages and the timer wake this thread: waiting on the record queue
            // too would cost the logging thread a wake-up per record.
            let control = self
                .control
                .recv_timeout(tick.saturating_duration_since(Instant::now()));
            // Export errors are counted and warned about where they happen, and reported to the
            // next flush or shutdown.
            match control {
                Ok(Control::BatchReady) => {
                    self.shared.batch_signalled.store(false, Ordering::Release);
                    self.export_queued(None);
                }
                Ok(Control::Flush(ack)) => {
                    self.export_queued(None);
                    let _ = ack.send(self.report());
                }
                Ok(Control::StepEnded) => self.export_queued(None),
                Ok(Control::Shutdown(ack)) => {
                    let deadline = Instant::now() + self.timeout;
                    return self.stop(Some(deadline), Some(ack));
                }
                Err(RecvTimeoutError::Timeout) => {
                    tick = Instant::now() + self.delay;
                    self.export_queued(None);
                }
                // Every handle and the layer are gone: nothing more can arrive or be asked.
                Err(RecvTimeoutError::Disconnected) => return self.stop(None, None),
            }
        }
    }

    /// Exports what is queued now (not what arrives meanwhile, so a flush under constant load
    /// still ends), in batches; past `deadline`, counts the rest as dropped instead.
    fn export_queued(&mut self, deadline: Option<Instant>) {
        let mut remaining = self.records.len();
        while remaining > 0 {
            let want = remaining.min(self.max_batch);
            if !self
                .shared
                .ledger
                .take(&self.records, &mut self.batch, want)
            {
                return; // abandoned by shutdown: everything is counted already
            }
            if self.batch.is_empty() {
                return;
            }
            remaining = remaining.saturating_sub(self.batch.len());
            self.export_batch(deadline);
        }
    }

    /// What a flush or shutdown answers: the last export failure since the previous answer, so
    /// `Ok` means every record emitted before the call reached the collector or was counted.
    fn report(&mut self) -> Result<(), String> {
        self.unreported_failure.take().map_or(Ok(()), Err)
    }

    fn stop(mut self, deadline: Option<Instant>, ack: Option<Sender<Result<(), String>>>) {
        self.export_queued(deadline);
        let result = self.report();
        self.shared.close();
        // Records that got in between the last export and `close`: counted, never lost quietly.
        self.shared.count_stragglers();
        self.transport.shutdown();
        if let Some(ack) = ack {
            let _ = ack.send(result);
        }
    }

    /// Exports the current batch, one request per run so each goes under its own resource;
    /// past `deadline` (or once shutdown gave up on this thread) starts no new request.
    fn export_batch(&mut self, deadline: Option<Instant>) {
        // Stable sort: records of one run keep their order.
        self.batch
            .sort_by_key(|queued| Arc::as_ptr(&queued.run) as usize);
        let ledger = &self.shared.ledger;
        let mut start = 0;
        while start < self.batch.len() {
            let run = Arc::clone(&self.batch[start].run);
            let end = start
                + self.batch[start..]
                    .iter()
                    .take_while(|queued| Arc::ptr_eq(&queued.run, &run))
                    .count();
            let records = start..end;
            start = end;
            let n = records.len() as u64;
            if deadline.is_some_and(|d| Instant::now() >= d) || ledger.abandoned() {
                ledger.settle(n, Outcome::Dropped);
                continue;
            }
            let group: Vec<(&SdkLogRecord, &InstrumentationScope)> = self.batch[records]
                .iter()
                .map(|queued| (&queued.record, &self.scope))
                .collect();
            self.transport.set_resource(&run.resource);
            match self.transport.export(LogBatch::new(&group)) {
                Ok(rejected) => {
                    ledger.settle(n, Outcome::Exported { rejected });
                    if rejected > 0 {
                        self.shared
                            .warn(&format!("the collector rejected {rejected} of {n} records"));
                    }
                }
                Err(error) => {
                    ledger.settle(n, Outcome::Failed);
                    self.shared
                        .warn(&format!("export of {n} records failed: {error}"));
                    self.unreported_failure = Some(error);
                }
            }
        }
        self.batch.clear();
    }
}
