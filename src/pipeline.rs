//! The export pipeline: one bounded queue shared by every run, one worker thread that batches
//! records, groups them by run and exports each group under its run's resource through
//! opentelemetry-otlp, plus the handle and guard users control it with.

use std::cell::Cell;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{
    bounded, unbounded, Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError,
};
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::logs::{LogBatch, SdkLogRecord};

use crate::config::Settings;
use crate::exporter::Transport;
use crate::span_context::Run;
use crate::{Error, OtelLogStoreConfig};

/// How long [`LogStoreHandle::force_flush`] waits for the worker before giving up.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);
/// Slack over one export timeout that [`LogStoreHandle::shutdown`] allows.
const SHUTDOWN_SLACK: Duration = Duration::from_millis(200);
/// Least time between two warnings on stderr about lost records.
const WARN_EVERY: Duration = Duration::from_secs(10);

thread_local! {
    /// Set on the worker thread: whatever it logs (HTTP client, SDK) must not come back as records.
    static ON_EXPORT_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// `true` on the pipeline's own thread, where events are never exported (no telemetry loop).
pub(crate) fn on_export_thread() -> bool {
    ON_EXPORT_THREAD.with(Cell::get)
}

/// A record waiting for export, with the run it belongs to.
#[derive(Debug)]
pub(crate) struct QueuedRecord {
    pub(crate) run: Arc<Run>,
    pub(crate) record: SdkLogRecord,
}

#[derive(Debug)]
enum Control {
    /// A batch' worth of records is queued. Sent once per batch (see `Shared::batch_signalled`)
    /// so that a busy logging thread does not wake the worker for every record.
    BatchReady,
    Flush(Sender<Result<(), String>>),
    /// A step's span closed: export what is queued now rather than at the next tick.
    StepEnded,
    Shutdown(Sender<Result<(), String>>),
}

/// Counters of the records that went through the pipeline.
///
/// Once [`LogStoreHandle::force_flush`] or [`LogStoreHandle::shutdown`] has returned,
/// `emitted == exported + dropped + failed + rejected` for everything emitted before the call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportStats {
    /// Events that became records.
    pub emitted: u64,
    /// Records the collector acknowledged.
    pub exported: u64,
    /// Records never sent: the queue was full, or the pipeline was shut down.
    pub dropped: u64,
    /// Records sent in requests that failed after the exporter's retries.
    pub failed: u64,
    /// Records the collector answered as rejected in a partial success (OTLP/HTTP; gRPC
    /// responses are not visible through opentelemetry-otlp).
    pub rejected: u64,
    /// Distinct run/step/source contexts whose state is held now: by an open span or a queued
    /// record. Falls back to zero once their spans closed and their records were exported.
    pub live_runs: u64,
}

#[derive(Debug, Default)]
struct Counters {
    emitted: AtomicU64,
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    rejected: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    counters: Counters,
    /// Set once the worker stops taking records; emitters then count drops without queueing.
    closed: AtomicBool,
    /// Set by the emitter that sent `BatchReady`, cleared by the worker when it takes the batch.
    batch_signalled: AtomicBool,
    shutdown_requested: AtomicBool,
    /// The export timeout, which also bounds `shutdown()`.
    shutdown_timeout: Duration,
    /// The queue's receiving end once the worker is gone, so records that raced with shutdown
    /// are still counted as dropped instead of vanishing with the channel.
    leftover: Mutex<Option<Receiver<QueuedRecord>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    last_warning: Mutex<Option<Instant>>,
    live_runs: Arc<AtomicU64>,
}

impl Shared {
    fn count_dropped(&self, n: u64) {
        self.counters.dropped.fetch_add(n, Ordering::Relaxed);
        self.warn("records dropped: the export queue is full or the log store is shut down");
    }

    /// Rate-limited note on stderr; never through `tracing`, which would feed the queue again.
    fn warn(&self, what: &str) {
        let mut last = self.last_warning.lock().unwrap_or_else(|e| e.into_inner());
        if last.map_or(true, |at| at.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            let c = &self.counters;
            eprintln!(
                "zenml-otel: {what} (emitted {}, exported {}, dropped {}, failed {}, rejected {})",
                c.emitted.load(Ordering::Relaxed),
                c.exported.load(Ordering::Relaxed),
                c.dropped.load(Ordering::Relaxed),
                c.failed.load(Ordering::Relaxed),
                c.rejected.load(Ordering::Relaxed),
            );
        }
    }
}

/// The layer's side of the pipeline: enqueue without ever waiting.
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
    pub(crate) fn emit(&self, record: QueuedRecord) {
        self.shared.counters.emitted.fetch_add(1, Ordering::Relaxed);
        if self.shared.closed.load(Ordering::Acquire) {
            self.shared.count_dropped(1);
            return;
        }
        let sent = match (self.records.try_send(record), self.block) {
            (Ok(()), _) => true,
            (Err(TrySendError::Full(record)), Some(wait)) => {
                // The worker may be asleep until its next tick: make sure it drains.
                self.signal_batch();
                self.records.send_timeout(record, wait).is_ok()
            }
            (Err(_), _) => false,
        };
        if !sent {
            self.shared.count_dropped(1);
            return;
        }
        if self.records.len() >= self.max_batch {
            self.signal_batch();
        }
    }

    /// Wakes the worker for a full batch, once until it takes the batch.
    fn signal_batch(&self) {
        if !self.shared.batch_signalled.swap(true, Ordering::AcqRel) {
            let _ = self.control.send(Control::BatchReady);
        }
    }

    /// Counts the runs (resources) alive, for [`ExportStats::live_runs`].
    pub(crate) fn run_gauge(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.shared.live_runs)
    }

    pub(crate) fn step_ended(&self) {
        // Unbounded and non-blocking; an error only means the worker is already gone.
        let _ = self.control.send(Control::StepEnded);
    }
}

/// Controls a layer's export pipeline from anywhere: flush, shut down, read the counters.
///
/// Cheap to clone; every clone controls the same pipeline.
#[derive(Debug, Clone)]
pub struct LogStoreHandle {
    control: Sender<Control>,
    shared: Arc<Shared>,
}

impl LogStoreHandle {
    /// Exports every record emitted before this call and waits (at most 30 s) until each was
    /// acknowledged or failed. Returns an error if any export failed since the previous flush
    /// (whatever triggered that export), so `Ok` means nothing emitted before the call failed.
    ///
    /// Once the layer itself has been dropped, its worker has already exported everything on
    /// the way out and this returns `Ok(())`; after [`shutdown`](Self::shutdown) it returns an
    /// error saying so.
    pub fn force_flush(&self) -> Result<(), Error> {
        let (ack, done) = bounded(1);
        if self.control.send(Control::Flush(ack)).is_err() {
            return self.after_stop();
        }
        match done.recv_timeout(FLUSH_TIMEOUT) {
            Ok(result) => result.map_err(Error::export),
            Err(RecvTimeoutError::Timeout) => Err(Error::timeout("force_flush")),
            // The worker stopped before reading the request, after its last export.
            Err(RecvTimeoutError::Disconnected) => self.after_stop(),
        }
    }

    fn after_stop(&self) -> Result<(), Error> {
        if self.shared.shutdown_requested.load(Ordering::Acquire) {
            Err(Error::shut_down())
        } else {
            Ok(())
        }
    }

    /// Exports what is queued, then stops the worker. Returns within the export timeout
    /// (`export_timeout_millis`) plus 200 ms; records still unsent by then are counted as dropped. Records emitted
    /// afterwards are counted as dropped. Calling it again returns `Ok(())` at once.
    pub fn shutdown(&self) -> Result<(), Error> {
        if self.shared.shutdown_requested.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let (ack, done) = bounded(1);
        if self.control.send(Control::Shutdown(ack)).is_err() {
            return Ok(()); // the worker already stopped on its own: nothing left to do
        }
        let wait = self.shared.shutdown_timeout + SHUTDOWN_SLACK;
        let result = match done.recv_timeout(wait) {
            Ok(result) => result.map_err(Error::export),
            Err(RecvTimeoutError::Timeout) => return Err(Error::timeout("shutdown")),
            Err(RecvTimeoutError::Disconnected) => Ok(()),
        };
        let worker = self
            .shared
            .worker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(worker) = worker {
            // It has already answered, so this only waits for the thread to return.
            let _ = worker.join();
        }
        result
    }

    /// The pipeline's counters now.
    pub fn stats(&self) -> ExportStats {
        let leftover = self
            .shared
            .leftover
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(records) = leftover.as_ref() {
            let raced = records.try_iter().count() as u64;
            if raced > 0 {
                self.shared
                    .counters
                    .dropped
                    .fetch_add(raced, Ordering::Relaxed);
            }
        }
        let c = &self.shared.counters;
        ExportStats {
            emitted: c.emitted.load(Ordering::Relaxed),
            exported: c.exported.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            live_runs: self.shared.live_runs.load(Ordering::Relaxed),
        }
    }

    /// A guard that shuts the pipeline down when dropped. See [`ShutdownGuard`].
    pub fn guard(&self) -> ShutdownGuard {
        ShutdownGuard {
            handle: self.clone(),
        }
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

/// Starts the worker thread, which builds the exporter (gRPC's runtime must live there) and
/// reports whether that worked before anything is logged.
pub(crate) fn start(
    config: &OtelLogStoreConfig,
    settings: &Settings,
) -> Result<(Emitter, LogStoreHandle), Error> {
    let (records_tx, records_rx) = bounded(config.max_queue_size);
    let (control_tx, control_rx) = unbounded();
    let shared = Arc::new(Shared {
        counters: Counters::default(),
        closed: AtomicBool::new(false),
        batch_signalled: AtomicBool::new(false),
        shutdown_requested: AtomicBool::new(false),
        shutdown_timeout: settings.timeout,
        leftover: Mutex::new(None),
        worker: Mutex::new(None),
        last_warning: Mutex::new(None),
        live_runs: Arc::default(),
    });
    let (built_tx, built_rx) = bounded(1);
    let worker_settings = settings.clone();
    let worker_shared = shared.clone();
    let max_batch = config.max_export_batch_size;
    let thread = std::thread::Builder::new()
        .name("zenml-otel-export".to_owned())
        .spawn(move || {
            ON_EXPORT_THREAD.with(|flag| flag.set(true));
            let transport = match Transport::build(&worker_settings) {
                Ok(transport) => transport,
                Err(error) => {
                    let _ = built_tx.send(Err(error));
                    return;
                }
            };
            let _ = built_tx.send(Ok(()));
            Worker {
                transport,
                scope: InstrumentationScope::builder("zenml-otel")
                    .with_version(env!("CARGO_PKG_VERSION"))
                    .build(),
                records: records_rx,
                control: control_rx,
                batch: Vec::with_capacity(max_batch),
                max_batch,
                delay: worker_settings.schedule_delay,
                timeout: worker_settings.timeout,
                shared: worker_shared,
                unreported_failure: None,
            }
            .run()
        })
        .map_err(|e| Error::export(format!("cannot start the export thread: {e}")))?;
    match built_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            let _ = thread.join();
            return Err(error);
        }
        Err(_) => return Err(Error::export("the export thread died while starting")),
    }
    *shared.worker.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
    Ok((
        Emitter {
            records: records_tx,
            control: control_tx.clone(),
            shared: shared.clone(),
            max_batch,
            block: settings.block,
        },
        LogStoreHandle {
            control: control_tx,
            shared,
        },
    ))
}

struct Worker {
    transport: Transport,
    scope: InstrumentationScope,
    records: Receiver<QueuedRecord>,
    control: Receiver<Control>,
    batch: Vec<QueuedRecord>,
    max_batch: usize,
    delay: Duration,
    timeout: Duration,
    shared: Arc<Shared>,
    unreported_failure: Option<String>,
}

impl Worker {
    fn run(mut self) {
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
                Ok(Control::StepEnded) => {
                    self.export_queued(None);
                }
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
        loop {
            while remaining > 0 && self.batch.len() < self.max_batch {
                match self.records.try_recv() {
                    Ok(record) => {
                        self.batch.push(record);
                        remaining -= 1;
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => remaining = 0,
                }
            }
            if self.batch.is_empty() {
                return;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.shared.count_dropped(self.batch.len() as u64);
                self.batch.clear();
                continue;
            }
            self.export_batch();
        }
    }

    /// What a flush or shutdown answers: the last export failure since the previous answer, so
    /// `Ok` means every record emitted before the call reached the collector or was dropped.
    fn report(&mut self) -> Result<(), String> {
        self.unreported_failure.take().map_or(Ok(()), Err)
    }

    fn stop(mut self, deadline: Option<Instant>, ack: Option<Sender<Result<(), String>>>) {
        self.export_queued(deadline);
        let result = self.report();
        self.shared.closed.store(true, Ordering::Release);
        // Records that got in between the last export and `closed`: counted, never lost quietly.
        let raced = self.records.try_iter().count() as u64;
        if raced > 0 {
            self.shared.count_dropped(raced);
        }
        self.transport.shutdown();
        *self
            .shared
            .leftover
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(self.records);
        if let Some(ack) = ack {
            let _ = ack.send(result);
        }
    }

    /// Exports the current batch, one request per run so each goes under its own resource.
    fn export_batch(&mut self) {
        // Stable sort: records of one run keep their order.
        self.batch
            .sort_by_key(|queued| Arc::as_ptr(&queued.run) as usize);
        let mut start = 0;
        while start < self.batch.len() {
            let run = self.batch[start].run.clone();
            let end = start
                + self.batch[start..]
                    .iter()
                    .take_while(|queued| Arc::ptr_eq(&queued.run, &run))
                    .count();
            let group: Vec<(&SdkLogRecord, &InstrumentationScope)> = self.batch[start..end]
                .iter()
                .map(|queued| (&queued.record, &self.scope))
                .collect();
            self.transport.set_resource(&run.resource);
            let outcome = self.transport.export(LogBatch::new(&group));
            let n = (end - start) as u64;
            match outcome {
                Ok(rejected) => {
                    let rejected = rejected.min(n);
                    let counters = &self.shared.counters;
                    counters.exported.fetch_add(n - rejected, Ordering::Relaxed);
                    if rejected > 0 {
                        counters.rejected.fetch_add(rejected, Ordering::Relaxed);
                        self.shared
                            .warn(&format!("the collector rejected {rejected} of {n} records"));
                    }
                }
                Err(error) => {
                    self.shared.counters.failed.fetch_add(n, Ordering::Relaxed);
                    self.shared
                        .warn(&format!("export of {n} records failed: {error}"));
                    self.unreported_failure = Some(error);
                }
            }
            start = end;
        }
        self.batch.clear();
    }
}
