//! The coordinator thread: takes records from the queue in batches (by size, delay, flush, a
//! step's end, shutdown) and hands each, numbered, to a free sender (`sender.rs`); it starts
//! and joins the senders and answers flushes and shutdown.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::ledger::{Ledger, Outcome};
use super::sender::{Job, Progress, SenderThread};
use super::{Control, Export, QueuedRecord, Shared};
use crate::config::Settings;

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
    /// A dead process's records from the spool: sent before anything else.
    recovered: Vec<QueuedRecord>,
    /// `spool_sync_millis`, and when the spool is synced next.
    spool_sync: Option<(Duration, Instant)>,
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
                let sender = SenderThread {
                    transport,
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
            recovered: Vec::new(),
            spool_sync: settings
                .spool_sync
                .map(|every| (every, Instant::now() + every)),
        })
    }

    /// Sends `recovered` (a dead process's spooled records) first.
    pub(super) fn recovering(mut self, recovered: Vec<QueuedRecord>) -> Self {
        self.recovered = recovered;
        self
    }

    /// Writes the spool through to the disk every `spool_sync_millis`. A failure is said (the
    /// records are still in the page cache, and sent as usual), and tried again next time.
    fn sync_spool_when_due(&mut self) {
        let (Some((every, at)), Some(spool)) = (&mut self.spool_sync, &self.shared.spool) else {
            return;
        };
        if Instant::now() < *at {
            return;
        }
        *at = Instant::now() + *every;
        if let Err(e) = spool.sync() {
            self.shared
                .warn(&format!("the spool could not be synced to the disk: {e}"));
        }
    }

    /// Hands out the recovered records, each counted in `recovered`.
    fn dispatch_recovered(&mut self) {
        let recovered = std::mem::take(&mut self.recovered);
        self.dispatch_read_back(recovered, Ledger::recover);
    }

    /// Sends again, from the spool, records given up in memory (a full queue, retries spent in
    /// a long outage), once no request waits for a retry and no server's delay holds them
    /// back: oldest first, with at most half the queue's free bytes in memory at once. Returns
    /// how many it handed out.
    fn resend_parked(&mut self) -> u64 {
        let shared = &self.shared;
        let Some(spool) = &shared.spool else { return 0 };
        if shared.ledger.parked() == 0 || shared.outage.ongoing() || shared.resend_held_back() {
            return 0;
        }
        let queued = shared.queued_bytes.load(Ordering::Acquire);
        let room = shared.max_queued_bytes.saturating_sub(queued);
        let records: Vec<_> = spool
            .resend(room / 2)
            .into_iter()
            .map(QueuedRecord::spooled)
            .collect();
        let n = records.len() as u64;
        self.dispatch_read_back(records, Ledger::unpark);
        n
    }

    /// Hands out records read from the spool, a batch at a time, each counted by `count`, in
    /// flight and in the queue's bytes like a queued record (its sender releases them).
    fn dispatch_read_back(&mut self, records: Vec<QueuedRecord>, count: fn(&Ledger, u64)) {
        let mut records = records.into_iter();
        loop {
            self.batch.extend(records.by_ref().take(self.max_batch));
            if self.batch.is_empty() {
                return;
            }
            count(&self.shared.ledger, self.batch.len() as u64);
            let bytes = self.batch.iter().map(|queued| queued.size).sum();
            self.shared.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
            self.dispatch_batch();
        }
    }

    pub(super) fn run(mut self) {
        self.dispatch_recovered();
        let mut tick = Instant::now() + self.delay;
        loop {
            // Only control messages and the timer wake this thread: waiting on the record queue
            // too would cost the logging thread a wake-up per record.
            let wake = self.spool_sync.map_or(tick, |(_, at)| at.min(tick));
            let control = self
                .control
                .recv_timeout(wake.saturating_duration_since(Instant::now()));
            self.sync_spool_when_due();
            match control {
                Ok(Control::BatchReady) => {
                    self.shared.batch_signalled.store(false, Ordering::Release);
                    self.dispatch_queued();
                    self.resend_parked();
                }
                Ok(Control::Flush(ack)) => {
                    let _ = ack.send(self.drain());
                }
                Ok(Control::StepEnded) => self.dispatch_queued(),
                Ok(Control::Shutdown(ack)) => return self.stop(Some(ack)),
                Err(RecvTimeoutError::Timeout) if Instant::now() < tick => {}
                Err(RecvTimeoutError::Timeout) => {
                    tick = Instant::now() + self.delay;
                    self.resend_parked();
                    self.dispatch_queued();
                }
                // Every handle and the layer are gone: nothing more can arrive or be asked.
                Err(RecvTimeoutError::Disconnected) => return self.stop(None),
            }
        }
    }

    /// Hands out what is queued now, and what the spool holds parked, and waits until all of
    /// it is settled, through outages: what waited behind a retried request goes once that is
    /// done. Each parked record is sent again once at most (if it fails again it stays parked).
    fn drain(&mut self) -> Result<(), String> {
        let mut remaining = self.records.len();
        let mut parked = self.shared.ledger.parked();
        let mut result = Ok(());
        loop {
            remaining = self.dispatch(remaining);
            if let Err(failure) = self.progress.settle() {
                result = Err(failure);
            }
            let resent = if parked > 0 { self.resend_parked() } else { 0 };
            parked = parked.saturating_sub(resent);
            // Resent records are settled in the next round.
            if resent == 0 && (remaining == 0 || self.records.is_empty()) {
                let parked = self.shared.ledger.parked();
                if parked > 0 && result.is_ok() {
                    result = Err(format!(
                        "{parked} records are kept in the spool, not delivered yet: the \
                         collector is unreachable, or the queue had no room"
                    ));
                }
                return result;
            }
        }
    }

    /// Hands out what is queued now (not what arrives meanwhile, so a flush under constant load
    /// still ends), a batch at a time.
    fn dispatch_queued(&mut self) {
        self.dispatch(self.records.len());
    }

    /// Hands out up to `remaining` queued records, a batch at a time; returns how many of them
    /// wait behind a request being retried.
    fn dispatch(&mut self, mut remaining: usize) -> usize {
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
            self.dispatch_batch();
        }
        remaining
    }

    fn dispatch_batch(&mut self) {
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

    fn stop(mut self, ack: Option<Sender<Result<(), String>>>) {
        // Bounds the senders' retries, also when every handle went away without a shutdown
        // (`shutdown()` set its own deadline before asking).
        self.shared.stop.request(Instant::now() + self.timeout);
        let result = self.drain();
        // What stays in the spool for the next start is on the disk too.
        if let Some((_, at)) = &mut self.spool_sync {
            *at = Instant::now();
        }
        self.sync_spool_when_due();
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
