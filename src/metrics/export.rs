//! The metrics thread: every interval it observes the pipeline, encodes one request
//! (`encode.rs`) and sends it once with its own exporter (`otlp::SignalExporter`: the logs'
//! transport code, its own connections); at shutdown it sends the final counts once more,
//! within what is left of shutdown's bound, and ends. It shares nothing with the logs' queue
//! or senders: a slow or refusing collector delays only the next metrics request. Its requests
//! are counted apart (`ExportStats::metric_exports`, `metric_export_failures`); no retries,
//! since every request carries the totals.

use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::encode::{self, Encoder};
use crate::batch::Observer;
use crate::otlp::SignalExporter;

/// Least time between two warnings on stderr about failed metrics requests.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What the metrics thread is told.
pub(super) enum Command {
    /// Export the final counts within `deadline`, tell `done`, and end.
    Final { deadline: Instant, done: Sender<()> },
}

/// The metrics thread's state.
pub(super) struct MetricsThread {
    pub(super) exporter: SignalExporter,
    pub(super) encoder: Encoder,
    pub(super) observer: Observer,
    pub(super) interval: Duration,
    /// `export_timeout_millis`: one request's bound.
    pub(super) timeout: Duration,
    pub(super) last_warning: Option<Instant>,
}

impl MetricsThread {
    pub(super) fn run(mut self, commands: Receiver<Command>) {
        crate::batch::mark_export_thread();
        let mut next = Instant::now() + self.interval;
        loop {
            match commands.recv_deadline(next) {
                Err(RecvTimeoutError::Timeout) => {
                    if !self.export(Instant::now() + self.timeout) {
                        return; // the pipeline is gone
                    }
                    // Ticks missed while a request took long are skipped, not made up for.
                    next = (next + self.interval).max(Instant::now());
                }
                Ok(Command::Final { deadline, done }) => {
                    self.export(deadline);
                    let _ = done.send(());
                    return;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// One request of the counters now, sent by `deadline`; `false` once the pipeline is gone.
    fn export(&mut self, deadline: Instant) -> bool {
        let Some(observed) = self.observer.observe() else {
            return false;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            self.failed("no time was left in shutdown's bound for the final metrics");
            return true;
        }
        let request = self.encoder.request(&observed, nanos(SystemTime::now()));
        let sent = encode::to_bytes(&request, self.exporter.json()).and_then(|body| {
            self.exporter
                .send(body, left.min(self.timeout))
                .map_err(|failure| failure.message)
        });
        match sent {
            Ok(_) => self.observer.count_metric_export(true),
            Err(message) => self.failed(&message),
        }
        true
    }

    /// A failed request: counted, and said on stderr now and then (never through `tracing`).
    fn failed(&mut self, message: &str) {
        self.observer.count_metric_export(false);
        if self
            .last_warning
            .is_none_or(|at| at.elapsed() >= WARN_EVERY)
        {
            self.last_warning = Some(Instant::now());
            eprintln!(
                "zenml-otel: a metrics export failed (the logs are not affected; the next \
                 request carries the totals): {message}"
            );
        }
    }
}

/// Nanoseconds since the Unix epoch.
pub(super) fn nanos(time: SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
