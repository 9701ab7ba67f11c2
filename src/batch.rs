//! Batching: one bounded queue shared by every run (the emitter's side here), a coordinator
//! thread that cuts batches (`coordinator.rs`), sender threads that export them through the
//! [`Export`] seam (`sender.rs`) with retries (`retry.rs`) in each run's order (`order.rs`),
//! every record counted (`ledger.rs`), and the handle and guard users control it with
//! (`handle.rs`). Nothing here knows the wire: `otlp` implements `Export`.

mod coordinator;
mod handle;
mod ledger;
mod observe;
mod order;
mod receipt;
pub(crate) mod retry;
mod sender;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TrySendError};

use self::coordinator::Coordinator;
pub use self::handle::{ExportStats, LogStoreHandle, ShutdownGuard};
pub(crate) use self::ledger::DropReason;
use self::ledger::{Ledger, Outcome};
pub(crate) use self::observe::{AtShutdown, Observation, Observer};
use crate::config::Settings;
use crate::record::EncodedRecord;
use crate::span_context::{Resolved, Run};
use crate::spool::{Recovered, RecoveredRecord, Refused, Spool, SpoolRef};
use crate::{Error, OtelLogStoreConfig};

/// Least time between two warnings on stderr about lost records.
const WARN_EVERY: Duration = Duration::from_secs(10);

thread_local! {
    /// Set on the export thread: whatever it logs (HTTP client, SDK) must not come back as
    /// records.
    static ON_EXPORT_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// `true` on the pipeline's own threads, where events are never exported (no telemetry loop).
pub(crate) fn on_export_thread() -> bool {
    ON_EXPORT_THREAD.with(Cell::get)
}

pub(crate) fn mark_export_thread() {
    ON_EXPORT_THREAD.with(|flag| flag.set(true));
    // Nor does an OpenTelemetry SDK pipeline in the process (the `sdk` module's, the user's):
    // a suppressed context is the SDK's own way to keep exporters out of their telemetry (its
    // logger makes no record under one). This thread keeps it until it ends.
    std::mem::forget(opentelemetry::Context::enter_telemetry_suppressed_scope());
}

/// Export requests in flight at once: while the collector works on one, the next is encoded.
const LANES: usize = 3;

/// Told each request's records and fate: `Ok` with how many the collector rejected, or the
/// error.
pub(crate) type Settle<'s> = dyn FnMut(&[QueuedRecord], Result<u64, retry::Failure>) + 's;

/// What a sender exports with: the seam between the batching (queue, ledger, retries, order,
/// shutdown) and the wire, so that logic is tested with mock exporters (`batch/tests.rs`),
/// as the SDK's `BatchLogProcessor<E: LogExporter>` is.
pub(crate) trait Export: Send {
    /// Exports a batch of records of any runs and reports each request's fate to `settle`: the
    /// records it held, and `Ok` with how many the collector rejected in a partial
    /// success, or the error. A request that fails with a retryable error is sent again as
    /// long as a `retry()` allows; each attempt waits for its turn first
    /// ([`Retry::wait_turn`](retry::Retry::wait_turn)). Returns how many records it truncated
    /// to fit a request (`ExportStats::truncated`).
    fn export<'r>(
        &mut self,
        records: &mut [QueuedRecord],
        settle: &mut Settle<'_>,
        retry: &dyn Fn() -> retry::Retry<'r>,
    ) -> u64;

    /// The pipeline stops: release connections.
    fn shutdown(&mut self) {}
}

/// Builds the senders' exporters (as many as asked), on the export thread.
pub(crate) type Exporters =
    Box<dyn FnOnce(&Settings, usize) -> Result<Vec<Box<dyn Export>>, Error> + Send>;

/// A record waiting for export, with its context: the run it belongs to and the attributes
/// every record of that context carries after its own.
#[derive(Debug)]
pub(crate) struct QueuedRecord {
    pub(crate) context: Arc<Resolved>,
    /// Encoded on the logging thread.
    pub(crate) record: EncodedRecord,
    /// About how many bytes the record holds, for the queue's byte bound.
    pub(crate) size: usize,
    /// Where the spool holds it: acknowledged there once the collector has it.
    pub(crate) spooled: Option<SpoolRef>,
}

impl QueuedRecord {
    /// What a queued record holds besides its encoded bytes (its context pointer, the channel's
    /// slot, the allocation's header), for the byte bound.
    const OVERHEAD: usize = 64;

    pub(crate) fn new(context: Arc<Resolved>, record: EncodedRecord) -> Self {
        let size = record.len() + Self::OVERHEAD;
        Self {
            context,
            record,
            size,
            spooled: None,
        }
    }

    /// A record read back from the spool.
    pub(crate) fn spooled((context, record, at): RecoveredRecord) -> Self {
        Self {
            spooled: Some(at),
            ..Self::new(context, record)
        }
    }

    pub(crate) fn run(&self) -> &Arc<Run> {
        &self.context.run
    }
}

#[derive(Debug)]
enum Control {
    /// A batch's worth of records is queued. Sent once per batch (see
    /// `Shared::batch_signalled`) so that a busy logging thread does not wake the export
    /// thread for every record.
    BatchReady,
    Flush(Sender<Result<(), String>>),
    /// A step's span closed: export what is queued now rather than at the next tick.
    StepEnded,
    Shutdown(Sender<Result<(), String>>),
    /// Show the records on the step's console too, from now on.
    Console(crate::console::Console),
}

/// State shared by the emitter, the handles and the export thread.
#[derive(Debug)]
struct Shared {
    ledger: Ledger,
    /// A receiving end of the queue, so records left behind by a stopped (or abandoned) export
    /// thread are counted as dropped instead of vanishing with the channel.
    records: Receiver<QueuedRecord>,
    /// Set once the export thread takes no more records; emitters then count drops without
    /// queueing.
    closed: AtomicBool,
    /// Set by the emitter that sent `BatchReady`, cleared by the export thread when it takes
    /// the batch.
    batch_signalled: AtomicBool,
    /// Shutdown: requested, and by when.
    stop: retry::Stop,
    /// Requests waiting for a retry; while there are any, no new batch is handed out.
    outage: retry::Outage,
    /// Batches in flight by run: a run's requests go out in order.
    order: order::RunOrder,
    /// The export timeout, which also bounds `shutdown()`.
    timeout: Duration,
    worker: Mutex<Option<JoinHandle<()>>>,
    last_warning: Mutex<Option<Instant>>,
    /// Milliseconds after `epoch` before which no warning is printed.
    quiet_until: AtomicU64,
    epoch: Instant,
    live_runs: Arc<AtomicU64>,
    /// About how many bytes the queued records hold (`QueuedRecord::size`).
    queued_bytes: AtomicUsize,
    /// `max_queue_bytes`.
    max_queued_bytes: usize,
    /// Where `shutdown()` writes the final counters (`handover::STATS_FILE`).
    stats_file: std::sync::OnceLock<std::path::PathBuf>,
    /// `spool_dir`'s spool: every record is written there before it is queued.
    spool: Option<Spool>,
    /// Segments of a dead process's spool that ended torn or could not be read.
    spool_torn: u64,
    /// `max_retry_elapsed_millis`: the longest a server's delay is waited for.
    retry_window: Duration,
    /// Parked records are not sent again before this: the server asked for a delay longer
    /// than the retry window (`Retry-After`, `RetryInfo`), clamped to that window.
    resend_after: Mutex<Option<Instant>>,
    /// Run by `shutdown()` once the records are counted (`observe.rs`).
    at_shutdown: std::sync::OnceLock<AtShutdown>,
}

impl Shared {
    /// Takes room for `size` bytes in the queue; a record alone may always take an empty
    /// queue, however large.
    fn reserve_bytes(&self, size: usize) -> bool {
        let before = self.queued_bytes.fetch_add(size, Ordering::AcqRel);
        if before == 0 || before + size <= self.max_queued_bytes {
            return true;
        }
        self.release_bytes(size);
        false
    }

    fn release_bytes(&self, size: usize) {
        self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Once closed, whatever is still in the queue was emitted too late: what the spool holds
    /// stays there for the next start (counted `spooled`), the rest is dropped.
    fn count_stragglers(&self) {
        if self.closed.load(Ordering::SeqCst) {
            let (mut kept, mut dropped) = (0, 0);
            for straggler in self.records.try_iter() {
                match (&self.spool, straggler.spooled) {
                    (Some(spool), Some(at)) => {
                        spool.park([(straggler.record.time(), at, straggler.context)]);
                        kept += 1;
                    }
                    _ => dropped += 1,
                }
            }
            self.ledger.park_new(kept);
            if dropped > 0 {
                self.count_dropped(dropped, DropReason::AlreadyShutdown);
            }
        }
    }

    /// A record the spool could not take (full, or the disk refused a segment): it goes on in
    /// memory only, as without a spool, counted in `unspooled`.
    fn count_unspooled(&self, refused: &Refused) {
        self.ledger.unspooled.fetch_add(1, Ordering::Relaxed);
        match refused {
            Refused::Full => self.warn(
                "records kept in memory only: the spool is full (max_spool_bytes); a kill now \
                 loses them",
            ),
            Refused::Io(e) => self.warn(&format!(
                "records kept in memory only: the spool cannot grow: {e}; a kill now loses them"
            )),
            Refused::Closed => self.warn("records dropped: the log store is shut down"),
        }
    }

    /// A request's records whose export failed. With a spool, a retryable failure (the
    /// retries ran out in a long outage, or shutdown's deadline passed: never the collector's
    /// final word) keeps them there, to be sent again; a final one is counted and
    /// acknowledged, so no start sends them again. Records the spool never had are counted
    /// failed. Returns whether the spool kept them all.
    fn count_failed(&self, records: &[QueuedRecord], error: &retry::Failure) -> bool {
        let n = records.len();
        let spooled = || records.iter().filter_map(|queued| queued.spooled);
        match &self.spool {
            Some(spool) if error.retryable => {
                let kept = self.keep(spool, records);
                if error.retry_after.is_some() {
                    let not_before = Instant::now() + error.delay(self.retry_window);
                    let mut after = crate::sync::lock(&self.resend_after);
                    *after = Some(after.map_or(not_before, |at| at.max(not_before)));
                }
                self.ledger
                    .settle((n - kept) as u64, Outcome::Failed(error.error_type));
                self.warn(&format!(
                    "export of {n} records failed, {kept} kept in the spool to be sent again: {}",
                    error.message
                ));
                kept == n
            }
            _ => {
                self.ledger
                    .settle(n as u64, Outcome::Failed(error.error_type));
                if let Some(spool) = &self.spool {
                    spool.acknowledge(spooled());
                }
                self.warn(&format!("export of {n} records failed: {}", error.message));
                false
            }
        }
    }

    /// In-flight records that were not sent: what the spool holds is kept there (parked),
    /// returns how many.
    fn keep(&self, spool: &Spool, records: &[QueuedRecord]) -> usize {
        let spooled = || records.iter().filter_map(|queued| queued.spooled);
        let kept = spooled().count();
        spool.park(records.iter().filter_map(|queued| {
            let context = Arc::clone(&queued.context);
            Some((queued.record.time(), queued.spooled?, context))
        }));
        self.ledger.park(kept as u64);
        kept
    }

    /// A batch shutdown's deadline left no time for: kept in the spool where it is there (for
    /// the next start), else dropped.
    fn count_unsent(&self, records: &[QueuedRecord]) {
        let kept = self
            .spool
            .as_ref()
            .map_or(0, |spool| self.keep(spool, records));
        self.ledger
            .settle((records.len() - kept) as u64, Outcome::Dropped);
    }

    /// A record the queue had no room for: with a spool it is kept there (and sent again once
    /// there is room and the collector answers), else dropped.
    fn count_unqueued(&self, record: QueuedRecord) {
        match (&self.spool, record.spooled) {
            (Some(spool), Some(at)) => {
                spool.park([(record.record.time(), at, record.context)]);
                self.ledger.park_new(1);
                self.warn("records kept in the spool to be sent later: the export queue is full");
            }
            _ => self.count_dropped(1, DropReason::QueueFull),
        }
    }

    /// Whether a server's delay still holds back the parked records.
    fn resend_held_back(&self) -> bool {
        let mut after = crate::sync::lock(&self.resend_after);
        match *after {
            Some(at) if Instant::now() < at => true,
            Some(_) => {
                *after = None;
                false
            }
            None => false,
        }
    }

    fn count_dropped(&self, n: u64, reason: DropReason) {
        self.ledger.drop(reason, n);
        self.warn("records dropped: the export queue is full or the log store is shut down");
    }

    /// Rate-limited note on stderr; never through `tracing`, which would feed the queue again.
    fn warn(&self, what: &str) {
        // Dropping records is the overload path: skip the lock while a warning is recent.
        let now = self.epoch.elapsed().as_millis() as u64;
        if now < self.quiet_until.load(Ordering::Relaxed) {
            return;
        }
        let mut last = crate::sync::lock(&self.last_warning);
        if last.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            self.quiet_until
                .store(now + WARN_EVERY.as_millis() as u64, Ordering::Relaxed);
            let l = &self.ledger;
            eprintln!(
                "zenml-otel: {what} (emitted {}, exported {}, dropped {}, failed {}, rejected {})",
                l.emitted.load(Ordering::Relaxed),
                l.exported.load(Ordering::Relaxed),
                l.dropped(),
                l.failed.load(Ordering::Relaxed),
                l.rejected.load(Ordering::Relaxed),
            );
        }
    }
}

/// The layer's side of the pipeline: enqueue without waiting on I/O.
#[derive(Debug)]
pub(crate) struct Emitter {
    records: Sender<QueuedRecord>,
    control: Sender<Control>,
    shared: Arc<Shared>,
    max_batch: usize,
    /// `on_full = "block"`: how long to wait for room.
    block: Option<Duration>,
}

impl Emitter {
    /// Counts an event as emitted and dropped without building its record, when it could only
    /// be dropped: the pipeline is closed, or the queue is full and the policy is to drop.
    /// Under overload this spares the logging thread the whole record.
    pub(crate) fn drop_early(&self) -> bool {
        let closed = self.shared.closed.load(Ordering::SeqCst);
        // With a spool a record the queue cannot take is kept there: it must be built.
        let full = self.block.is_none() && self.shared.spool.is_none() && self.records.is_full();
        if closed || full {
            self.shared.ledger.emitted.fetch_add(1, Ordering::SeqCst);
            let reason = if closed {
                DropReason::AlreadyShutdown
            } else {
                DropReason::QueueFull
            };
            self.shared.count_dropped(1, reason);
            return true;
        }
        false
    }

    pub(crate) fn emit(&self, mut record: QueuedRecord) {
        // Counted before the `closed` check (both SeqCst): an abandoning shutdown then sees
        // every record either counted here as dropped or in the queue it drains.
        self.shared.ledger.emitted.fetch_add(1, Ordering::SeqCst);
        if self.shared.closed.load(Ordering::SeqCst) {
            self.shared.count_dropped(1, DropReason::AlreadyShutdown);
            return;
        }
        if let Some(spool) = &self.shared.spool {
            match spool.append(&record.context, &record.record) {
                Ok(at) => record.spooled = Some(at),
                // The spool closes at shutdown: the record came after it.
                Err(Refused::Closed) => {
                    return self.shared.count_dropped(1, DropReason::AlreadyShutdown)
                }
                Err(refused) => self.shared.count_unspooled(&refused),
            }
        }
        if let Some(unsent) = self.enqueue(record) {
            return self.shared.count_unqueued(unsent);
        }
        // The flag first: while a batch is signalled, no emitter needs the queue's length, and
        // under a backlog no emitter writes the flag's cache line for nothing.
        if !self.shared.batch_signalled.load(Ordering::Acquire)
            && self.records.len() >= self.max_batch
        {
            self.signal_batch();
        }
    }

    /// Puts `record` in the queue, within its bounds (waiting for room with `on_full =
    /// "block"`); returns it when there is no room.
    fn enqueue(&self, record: QueuedRecord) -> Option<QueuedRecord> {
        let size = record.size;
        let Some(waited) = self.room_for(size) else {
            return Some(record);
        };
        let unsent = match (self.records.try_send(record), self.block) {
            (Ok(()), _) => None,
            (Err(TrySendError::Full(record)), Some(wait)) => {
                // The export thread may be asleep until its next tick: make sure it drains.
                self.signal_batch();
                let left = wait.saturating_sub(waited);
                self.records
                    .send_timeout(record, left)
                    .err()
                    .map(|e| e.into_inner())
            }
            (Err(unsent), _) => Some(unsent.into_inner()),
        };
        if unsent.is_some() {
            self.shared.release_bytes(size);
        }
        unsent
    }

    /// Room in the queue's byte bound for `size` more bytes: at once, or with `on_full =
    /// "block"` once the senders have finished with enough (waiting at most `max_block_millis`).
    /// Returns how long it waited, `None` when there is no room.
    fn room_for(&self, size: usize) -> Option<Duration> {
        if self.shared.reserve_bytes(size) {
            return Some(Duration::ZERO);
        }
        let wait = self.block?;
        self.signal_batch();
        let started = Instant::now();
        while started.elapsed() < wait {
            std::thread::sleep(Duration::from_millis(1));
            if self.shared.reserve_bytes(size) {
                return Some(started.elapsed());
            }
        }
        None
    }

    /// Wakes the export thread for a full batch, once until it takes the batch.
    fn signal_batch(&self) {
        if !self.shared.batch_signalled.swap(true, Ordering::AcqRel) {
            let _ = self.control.send(Control::BatchReady);
        }
    }

    pub(crate) fn step_ended(&self) {
        // Unbounded and non-blocking; an error only means the export thread is already gone.
        let _ = self.control.send(Control::StepEnded);
    }

    /// Counts the runs (resources) alive, for [`ExportStats::live_runs`].
    pub(crate) fn run_gauge(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.shared.live_runs)
    }
}

/// Starts the coordinator thread, which builds the exporters and the senders and reports
/// whether that worked before anything is logged.
pub(crate) fn start(
    config: &OtelLogStoreConfig,
    settings: &Settings,
    exporters: Exporters,
) -> Result<(Emitter, LogStoreHandle), Error> {
    let (spool, recovered) = match &config.spool_dir {
        Some(dir) => {
            let (spool, recovered) = Spool::open(dir, config.max_spool_bytes)?;
            (Some(spool), recovered)
        }
        None => (None, Recovered::default()),
    };
    let spool_torn = recovered.torn;
    let (records_tx, records_rx) = bounded(config.max_queue_size);
    let (control_tx, control_rx) = unbounded();
    let shared = Arc::new(Shared {
        ledger: Ledger::default(),
        records: records_rx.clone(),
        closed: AtomicBool::new(false),
        batch_signalled: AtomicBool::new(false),
        stop: retry::Stop::default(),
        outage: retry::Outage::default(),
        order: order::RunOrder::default(),
        timeout: settings.timeout,
        worker: Mutex::new(None),
        last_warning: Mutex::new(None),
        quiet_until: AtomicU64::new(0),
        epoch: Instant::now(),
        live_runs: Arc::default(),
        queued_bytes: AtomicUsize::new(0),
        max_queued_bytes: config.max_queue_bytes,
        stats_file: std::sync::OnceLock::new(),
        spool,
        spool_torn,
        retry_window: settings.retry_window,
        resend_after: Mutex::new(None),
        at_shutdown: std::sync::OnceLock::new(),
    });
    let (built_tx, built_rx) = bounded(1);
    let worker_settings = settings.clone();
    let worker_shared = Arc::clone(&shared);
    let max_batch = config.max_export_batch_size;
    let thread = std::thread::Builder::new()
        .name("zenml-otel-export".to_owned())
        .spawn(move || {
            mark_export_thread();
            let coordinator = exporters(&worker_settings, LANES).and_then(|transports| {
                Coordinator::new(
                    transports,
                    records_rx,
                    control_rx,
                    max_batch,
                    &worker_settings,
                    worker_shared,
                )
                .map_err(|e| Error::export("cannot start the export threads").caused_by(e))
            });
            match coordinator {
                Ok(coordinator) => {
                    let _ = built_tx.send(Ok(()));
                    coordinator.run();
                }
                Err(error) => {
                    let _ = built_tx.send(Err(error));
                }
            }
        })
        .map_err(|e| Error::export("cannot start the export thread").caused_by(e))?;
    match built_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            let _ = thread.join();
            return Err(error);
        }
        Err(_) => return Err(Error::export("the export thread died while starting")),
    }
    *crate::sync::lock(&shared.worker) = Some(thread);
    Ok((
        Emitter {
            records: records_tx,
            control: control_tx.clone(),
            shared: Arc::clone(&shared),
            max_batch,
            block: settings.block,
        },
        LogStoreHandle {
            control: control_tx,
            shared,
        },
    ))
}

#[cfg(test)]
mod tests;
