//! The export threads. A coordinator takes records from the queue in batches; senders encode
//! and export them. With more than one sender, the next batch is encoded while the collector
//! still works on the last one.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::ledger::Outcome;
use super::retry::Retry;
use super::{Control, Export, QueuedRecord, Shared};
use crate::config::Settings;

/// One batch of records, of any runs.
struct Job {
    records: Vec<QueuedRecord>,
    /// Past it (shutdown's deadline), the job is counted as dropped instead of sent.
    deadline: Option<Instant>,
    /// Its place in dispatch order, which retries keep.
    seq: u64,
    /// The queue bytes its records hold until they are sent or counted (`max_queue_bytes`
    /// bounds records in flight too, not only those waiting).
    bytes: usize,
}

/// What the coordinator and the senders share: jobs not yet finished, and the last failure not
/// yet reported to a flush or shutdown.
#[derive(Default)]
struct Progress {
    state: Mutex<ProgressState>,
    idle: Condvar,
}

#[derive(Default)]
struct ProgressState {
    pending: usize,
    unreported_failure: Option<String>,
}

impl Progress {
    fn lock(&self) -> std::sync::MutexGuard<'_, ProgressState> {
        crate::sync::lock(&self.state)
    }

    /// Waits until every job handed out so far is finished, then takes the failure to report:
    /// `Ok` means every record emitted before the call reached the collector or was counted.
    fn settle(&self) -> Result<(), String> {
        let mut state = self.lock();
        while state.pending > 0 {
            state = crate::sync::wait(&self.idle, state);
        }
        state.unreported_failure.take().map_or(Ok(()), Err)
    }

    fn finished(&self, failure: Option<String>) {
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

/// The thread that batches and hands out the work; it owns the sender threads.
pub(super) struct Coordinator {
    records: Receiver<QueuedRecord>,
    control: Receiver<Control>,
    batch: Vec<QueuedRecord>,
    max_batch: usize,
    delay: Duration,
    timeout: Duration,
    shared: Arc<Shared>,
    jobs: Option<Sender<Job>>,
    progress: Arc<Progress>,
    senders: Vec<JoinHandle<()>>,
    next_seq: u64,
}

impl Coordinator {
    pub(super) fn new(
        transports: Vec<Box<dyn Export>>,
        records: Receiver<QueuedRecord>,
        control: Receiver<Control>,
        max_batch: usize,
        settings: &Settings,
        shared: Arc<Shared>,
    ) -> std::io::Result<Self> {
        // One job waiting per sender at most: batches beyond that stay in the bounded queue,
        // where they are counted, rather than piling up here.
        let (jobs, job_queue) = crossbeam_channel::bounded::<Job>(transports.len());
        let progress = Arc::new(Progress::default());
        let senders = transports
            .into_iter()
            .enumerate()
            .map(|(lane, transport)| {
                let sender = Lane {
                    transport,
                    max_request_bytes: settings.max_request_bytes,
                    retry_window: settings.retry_window,
                    jobs: job_queue.clone(),
                    shared: Arc::clone(&shared),
                    progress: Arc::clone(&progress),
                };
                std::thread::Builder::new()
                    .name(format!("zenml-otel-send-{lane}"))
                    .spawn(move || sender.run())
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self {
            records,
            control,
            batch: Vec::with_capacity(max_batch),
            max_batch,
            delay: settings.schedule_delay,
            timeout: settings.timeout,
            shared,
            jobs: Some(jobs),
            progress,
            senders,
            next_seq: 0,
        })
    }

    pub(super) fn run(mut self) {
        let mut tick = Instant::now() + self.delay;
        loop {
            // Only control messages and the timer wake this thread: waiting on the record queue
            // too would cost the logging thread a wake-up per record.
            let control = self
                .control
                .recv_timeout(tick.saturating_duration_since(Instant::now()));
            match control {
                Ok(Control::BatchReady) => {
                    self.shared.batch_signalled.store(false, Ordering::Release);
                    self.dispatch_queued(None);
                }
                Ok(Control::Flush(ack)) => {
                    let _ = ack.send(self.drain(None));
                }
                Ok(Control::StepEnded) => self.dispatch_queued(None),
                Ok(Control::Shutdown(ack)) => {
                    let deadline = Instant::now() + self.timeout;
                    return self.stop(Some(deadline), Some(ack));
                }
                Err(RecvTimeoutError::Timeout) => {
                    tick = Instant::now() + self.delay;
                    self.dispatch_queued(None);
                }
                // Every handle and the layer are gone: nothing more can arrive or be asked.
                Err(RecvTimeoutError::Disconnected) => return self.stop(None, None),
            }
        }
    }

    /// Hands out what is queued now and waits until all of it is settled, through outages:
    /// what waited behind a retried request goes once that is done.
    fn drain(&mut self, deadline: Option<Instant>) -> Result<(), String> {
        let mut remaining = self.records.len();
        let mut result = Ok(());
        loop {
            remaining = self.dispatch(remaining, deadline);
            if let Err(failure) = self.progress.settle() {
                result = Err(failure);
            }
            if remaining == 0 || self.records.is_empty() {
                return result;
            }
        }
    }

    /// Hands out what is queued now (not what arrives meanwhile, so a flush under constant load
    /// still ends), a batch at a time.
    fn dispatch_queued(&mut self, deadline: Option<Instant>) {
        self.dispatch(self.records.len(), deadline);
    }

    /// Hands out up to `remaining` queued records, a batch at a time; returns how many of them
    /// wait behind a request being retried.
    fn dispatch(&mut self, mut remaining: usize, deadline: Option<Instant>) -> usize {
        // During an outage new batches wait in the queue, behind the request being retried.
        while remaining > 0 && !self.shared.outage.ongoing() {
            let want = remaining.min(self.max_batch);
            if !self
                .shared
                .ledger
                .take(&self.records, &mut self.batch, want)
            {
                return 0; // abandoned by shutdown: everything is counted already
            }
            if self.batch.is_empty() {
                return 0;
            }
            remaining = remaining.saturating_sub(self.batch.len());
            self.dispatch_batch(deadline);
        }
        remaining
    }

    fn dispatch_batch(&mut self, deadline: Option<Instant>) {
        let Some(jobs) = &self.jobs else { return };
        let records = std::mem::replace(&mut self.batch, Vec::with_capacity(self.max_batch));
        let bytes = records.iter().map(|queued| queued.size).sum();
        self.progress.lock().pending += 1;
        self.next_seq += 1;
        let seq = self.next_seq;
        let runs = records
            .iter()
            .map(|queued| Arc::as_ptr(queued.run()) as usize);
        self.shared.order.open(seq, runs.collect());
        if let Err(unsent) = jobs.send(Job {
            records,
            deadline,
            seq,
            bytes,
        }) {
            // Every sender is gone (it cannot happen while we hold `jobs`): count, not lose.
            let n = unsent.into_inner().records.len() as u64;
            self.shared.ledger.settle(n, Outcome::Dropped);
            self.shared.release_bytes(bytes);
            self.shared.order.close(seq);
            self.progress.finished(None);
        }
    }

    fn stop(mut self, deadline: Option<Instant>, ack: Option<Sender<Result<(), String>>>) {
        // Ends the senders' retries, also when every handle went away without a shutdown.
        self.shared
            .shutdown_requested
            .store(true, Ordering::Release);
        let result = self.drain(deadline);
        self.shared.close();
        // Records that got in between the last export and `close`: counted, never lost quietly.
        self.shared.count_stragglers();
        // Senders finish their (already settled) work and return once the job queue closes.
        self.jobs = None;
        if let Some(ack) = ack {
            let _ = ack.send(result);
        }
        for sender in self.senders.drain(..) {
            let _ = sender.join();
        }
    }
}

/// A sender thread: exports the jobs it is handed with its own exporter.
struct Lane {
    transport: Box<dyn Export>,
    max_request_bytes: usize,
    /// How long a request that failed with a retryable error is tried again.
    retry_window: Duration,
    jobs: Receiver<Job>,
    shared: Arc<Shared>,
    progress: Arc<Progress>,
}

impl Lane {
    fn run(mut self) {
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
        if job.deadline.is_some_and(|d| Instant::now() >= d) || ledger.abandoned() {
            ledger.settle(job.records.len() as u64, Outcome::Dropped);
            return None;
        }
        shared
            .outage
            .wait_behind_older(job.seq, &shared.shutdown_requested);
        let truncated = super::limit::fit_oversized(&mut job.records, self.max_request_bytes);
        ledger.truncated.fetch_add(truncated, Ordering::Relaxed);
        let mut failure = None;
        let window = self.retry_window;
        let seq = job.seq;
        let deadline = job.deadline;
        let retry = || {
            Retry::new(&shared.outage, seq, &shared.shutdown_requested, window)
                .in_order(&shared.order, deadline)
        };
        self.transport.export(
            &mut job.records,
            &mut |n, result| match result {
                Ok(rejected) => {
                    ledger.settle(n as u64, Outcome::Exported { rejected });
                    if rejected > 0 {
                        shared.warn(&format!("the collector rejected {rejected} of {n} records"));
                    }
                }
                Err(error) => {
                    ledger.settle(n as u64, Outcome::Failed);
                    shared.warn(&format!("export of {n} records failed: {error}"));
                    failure = Some(error);
                }
            },
            &retry,
        );
        failure
    }
}
