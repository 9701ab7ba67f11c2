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
use crate::console::Console;
use crate::spool::Pile;

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
    /// The thread that syncs the spool every `spool_sync_millis`, and what stops it.
    spool_sync: Option<(Sender<()>, JoinHandle<()>)>,
    /// The step's console, when the helper handed one over.
    console: Option<Console>,
}

/// How often the coordinator looks again while records wait in the spool to be read back: as
/// soon as a sender is free, give or take this.
const READ_BACK_POLL: Duration = Duration::from_millis(10);

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
        let spool_sync = spool_syncer(settings, &shared)?;
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
            spool_sync,
            console: None,
        })
    }

    /// Hands out records read back from the spool — a dead process's first, then (with
    /// `parked_too`) those given up in memory — once no request waits for a retry (and, for
    /// parked ones, no server's delay holds them back): within half the queue's free bytes,
    /// and no more batches than the senders can take now, so the coordinator never waits on a
    /// sender and answers flushes, step ends and shutdown meanwhile. Returns the pile and how
    /// many it handed out.
    fn read_back(&mut self, parked_too: bool) -> (Pile, u64) {
        let shared = &self.shared;
        let (Some(spool), Some(jobs)) = (&shared.spool, &self.jobs) else {
            return (Pile::Parked, 0);
        };
        // Past shutdown's deadline nothing more is sent: what waits stays on disk, as it is.
        if shared.outage.ongoing() || shared.stop.passed() {
            return (Pile::Parked, 0);
        }
        let (pile, count): (Pile, fn(&Ledger, u64)) = if spool.piled(Pile::Recovered) {
            (Pile::Recovered, Ledger::recover)
        } else if parked_too && shared.ledger.parked() > 0 && !shared.resend_held_back() {
            (Pile::Parked, Ledger::unpark)
        } else {
            return (Pile::Parked, 0);
        };
        let free_jobs = jobs.capacity().unwrap_or(1).saturating_sub(jobs.len());
        let queued = shared.queued_bytes.load(Ordering::Acquire);
        let room = shared.max_queued_bytes.saturating_sub(queued);
        if free_jobs == 0 {
            return (pile, 0);
        }
        let records: Vec<_> = spool
            .read_back(pile, room / 2, free_jobs * self.max_batch)
            .into_iter()
            .map(QueuedRecord::spooled)
            .collect();
        let n = records.len() as u64;
        self.dispatch_read_back(records, count);
        (pile, n)
    }

    /// Whether a dead process's records still wait in the spool: they go before any new one.
    fn recovering(&self) -> bool {
        self.shared
            .spool
            .as_ref()
            .is_some_and(|spool| spool.piled(Pile::Recovered))
    }

    /// Whether records wait in the spool to be read back now.
    fn reading_back(&self) -> bool {
        self.recovering()
            || (self.shared.ledger.parked() > 0
                && !self.shared.outage.ongoing()
                && !self.shared.resend_held_back())
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
        self.read_back(true);
        let mut tick = Instant::now() + self.delay;
        loop {
            // Only control messages and the timer wake this thread: waiting on the record queue
            // too would cost the logging thread a wake-up per record.
            let mut wake = tick;
            if self.reading_back() {
                wake = wake.min(Instant::now() + READ_BACK_POLL);
                self.dispatch_queued();
            }
            let control = self
                .control
                .recv_timeout(wake.saturating_duration_since(Instant::now()));
            match control {
                Ok(Control::BatchReady) => {
                    self.shared.batch_signalled.store(false, Ordering::Release);
                    self.dispatch_queued();
                }
                Ok(Control::Flush(ack)) => {
                    let _ = ack.send(self.drain());
                }
                Ok(Control::StepEnded) => self.dispatch_queued(),
                Ok(Control::Shutdown(ack)) => return self.stop(Some(ack)),
                Ok(Control::Console(console)) => self.console = Some(console),
                Err(RecvTimeoutError::Timeout) if Instant::now() < tick => {}
                Err(RecvTimeoutError::Timeout) => {
                    tick = Instant::now() + self.delay;
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
            let (pile, resent) = self.read_back(parked > 0);
            if pile == Pile::Parked {
                parked = parked.saturating_sub(resent);
            }
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
        // Records read back from the spool are older than any queued one: they go first.
        self.read_back(true);
        if !self.reading_back() {
            self.dispatch(self.records.len());
        } else if self.starved() {
            self.park_queued(self.records.len());
        }
    }

    /// Whether the queue holds so much of `max_queue_bytes` that records read back from the
    /// spool would come a few at a time.
    fn starved(&self) -> bool {
        let queued = self.shared.queued_bytes.load(Ordering::Acquire);
        self.shared.max_queued_bytes.saturating_sub(queued) < self.shared.max_queued_bytes / 4
    }

    /// Takes up to `n` queued records out of memory while older records are read back from the
    /// spool: each is in the spool too, so it waits there (parked, behind them) and its bytes
    /// are free for the read-back; one the spool refused is handed out as usual.
    fn park_queued(&mut self, n: usize) {
        let shared = Arc::clone(&self.shared);
        let Some(spool) = &shared.spool else { return };
        let mut taken = Vec::with_capacity(n.min(self.max_batch));
        let mut left = n;
        while left > 0 {
            if !shared
                .ledger
                .take(&self.records, &mut taken, left.min(self.max_batch))
            {
                return;
            }
            if taken.is_empty() {
                return;
            }
            show(&mut self.console, &taken);
            left = left.saturating_sub(taken.len());
            let (spooled, unspooled): (Vec<_>, Vec<_>) =
                taken.drain(..).partition(|queued| queued.spooled.is_some());
            shared.keep(spool, &spooled);
            shared.release_bytes(spooled.iter().map(|queued| queued.size).sum());
            self.batch.extend(unspooled);
            if !self.batch.is_empty() {
                self.dispatch_batch();
            }
        }
    }

    /// Hands out up to `remaining` queued records, a batch at a time; returns how many of them
    /// wait behind a request being retried.
    fn dispatch(&mut self, mut remaining: usize) -> usize {
        // During an outage new batches wait in the queue, behind the request being retried;
        // while a dead process's records wait in the spool, behind those (and in the spool
        // when the queue's memory is wanted for them).
        if self.recovering() && self.starved() && !self.shared.outage.ongoing() {
            self.park_queued(remaining);
            return 0;
        }
        while remaining > 0 && !self.shared.outage.ongoing() && !self.recovering() {
            let want = remaining.min(self.max_batch);
            let before = self.batch.len();
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
            show(&mut self.console, &self.batch[before..]);
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
        let without_shutdown = ack.is_none();
        // Bounds the senders' retries, also when every handle went away without a shutdown
        // (`shutdown()` set its own deadline before asking).
        self.shared.stop.request(Instant::now() + self.timeout);
        let result = self.drain();
        // What stays in the spool for the next start is on the disk too.
        if let Some((stop, syncer)) = self.spool_sync.take() {
            drop(stop);
            let _ = syncer.join();
            sync(&self.shared);
        }
        if let Some(console) = self.console.take() {
            let deadline = self.shared.stop.deadline();
            console.finish(deadline.unwrap_or_else(Instant::now));
        }
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
        // Every handle went away without a `shutdown()`, which would have run it.
        if without_shutdown {
            self.shared.at_shutdown(Instant::now() + self.timeout);
        }
    }
}

/// Shows records leaving the live queue (once each: not again when read back from the spool)
/// on the step's console.
fn show(console: &mut Option<Console>, records: &[QueuedRecord]) {
    if let Some(console) = console {
        console.show(records.iter().map(|queued| &queued.record));
    }
}

/// With `spool_sync_millis`: a thread that writes the spool through to the disk that often,
/// on its own so that the bound holds while the coordinator waits (a drain through an outage,
/// a read-back), until the returned sender is dropped.
fn spool_syncer(
    settings: &Settings,
    shared: &Arc<Shared>,
) -> std::io::Result<Option<(Sender<()>, JoinHandle<()>)>> {
    let (Some(every), Some(_)) = (settings.spool_sync, &shared.spool) else {
        return Ok(None);
    };
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    let shared = Arc::clone(shared);
    let thread = std::thread::Builder::new()
        .name("zenml-otel-sync".to_owned())
        .spawn(move || {
            super::mark_export_thread();
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                sync(&shared);
            }
        })?;
    Ok(Some((stop, thread)))
}

/// Writes the spool through to the disk. A failure is said (the records are still in the page
/// cache, and sent as usual), and tried again next time.
fn sync(shared: &Shared) {
    if let Some(Err(e)) = shared.spool.as_ref().map(|spool| spool.sync()) {
        shared.warn(&format!("the spool could not be synced to the disk: {e}"));
    }
}
