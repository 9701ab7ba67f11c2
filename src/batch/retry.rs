//! Outages longer than one export: a request that failed with a retryable error is sent again,
//! with capped exponential backoff, for up to `max_retry_elapsed_millis` — and once the pipeline
//! shuts down, until shutdown's deadline: a wait that would end past it is cut short, so the
//! last attempt still fits (a collector that comes back while a short-lived program exits still
//! gets its records). While any request waits for its retry, the coordinator hands out no new
//! batches, so newer records stay queued behind it (under the queue's usual bounds) and a run's
//! records keep their order.

use super::order::RunOrder;
use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// First wait after an export failed, doubled per attempt up to [`MAX_BACKOFF`], as the Collector's
/// `retry_on_failure` does.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often a wait looks for a shutdown.
const POLL: Duration = Duration::from_millis(50);
/// The last attempt during a shutdown starts this long before its deadline, so its answer (or
/// a refused connection) still arrives before `shutdown()` stops waiting.
const LAST_ATTEMPT_ROOM: Duration = Duration::from_millis(200);

/// Shutdown as the senders see it: once requested, by when everything must be sent or counted.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    deadline: OnceLock<Instant>,
}

impl Stop {
    /// Requests shutdown by `deadline`. `false` if it was requested already: the first
    /// deadline stays.
    pub(crate) fn request(&self, deadline: Instant) -> bool {
        self.deadline.set(deadline).is_ok()
    }

    pub(crate) fn requested(&self) -> bool {
        self.deadline.get().is_some()
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline.get().copied()
    }

    /// Whether shutdown's deadline has passed: nothing more may be sent.
    pub(crate) fn passed(&self) -> bool {
        self.deadline()
            .is_some_and(|deadline| Instant::now() >= deadline)
    }
}

/// Why an export failed, and whether sending it again may succeed.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) message: String,
    /// Its class, for the metrics' `error.type` (`src/metrics/names.rs`).
    pub(crate) error_type: ErrorType,
    pub(crate) retryable: bool,
    /// The server's `Retry-After` (gRPC: `RetryInfo`): the next attempt waits at least this
    /// long. Any value a server sends, read through [`delay`](Self::delay).
    pub(crate) retry_after: Option<Duration>,
}

impl Failure {
    /// The server's delay, clamped to `window`: a longer one cannot be waited for (the request
    /// fails, or with a spool waits parked, [`resend_after`](super::Shared)), and no answer
    /// may overflow a clock.
    pub(crate) fn delay(&self, window: Duration) -> Duration {
        self.retry_after.unwrap_or_default().min(window)
    }
}

/// The class of a failed export, low in cardinality: what the metrics' `error.type` of
/// `otel.sdk.exporter.log.exported` says (`src/metrics/names.rs` spells them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum ErrorType {
    /// The collector answered this HTTP status (an error, or a redirect never followed).
    #[cfg_attr(not(feature = "http-proto"), allow(dead_code))]
    Http(u16),
    /// The collector answered this gRPC status code.
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    Grpc(i32),
    /// No answer within the export timeout.
    #[cfg_attr(not(feature = "http-proto"), allow(dead_code))]
    Timeout,
    /// No connection, or it broke (refused, reset, a host that does not resolve).
    #[cfg_attr(not(feature = "http-proto"), allow(dead_code))]
    Connection,
    /// TLS refused the collector's certificate (or the collector refused ours).
    #[cfg_attr(not(feature = "http-proto"), allow(dead_code))]
    Tls,
    /// One record's request is larger than `max_export_batch_bytes` or the collector takes.
    TooLarge,
    /// The request could not be written (OTLP/JSON, compression).
    #[cfg_attr(not(feature = "http-proto"), allow(dead_code))]
    Encoding,
    /// The exporter panicked.
    Panic,
    /// Shutdown's deadline passed before the request's turn.
    ShutdownDeadline,
}

/// What the senders share about retries: the batches (by dispatch order) with a request
/// waiting for one. The oldest is tried first, so batches that were in flight together when the
/// collector went away arrive in their order.
#[derive(Debug, Default)]
pub(crate) struct Outage {
    waiting: Mutex<BTreeSet<u64>>,
}

impl Outage {
    /// Whether some request waits for a retry: new batches must wait behind it.
    pub(crate) fn ongoing(&self) -> bool {
        !self.lock().is_empty()
    }

    /// Waits while an older batch than `batch` waits for a retry (a batch handed out before the
    /// outage was noticed must not overtake it), at most until shutdown's deadline.
    pub(crate) fn wait_behind_older(&self, batch: u64, stop: &Stop) {
        while self.oldest().is_some_and(|oldest| oldest < batch) && !stop.passed() {
            std::thread::sleep(POLL);
        }
    }

    fn oldest(&self) -> Option<u64> {
        self.lock().first().copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        crate::sync::lock(&self.waiting)
    }
}

/// One request's retries.
#[derive(Debug)]
pub(crate) struct Retry<'a> {
    outage: &'a Outage,
    /// The batch's place in dispatch order.
    batch: u64,
    stop: &'a Stop,
    window: Duration,
    started: Option<Instant>,
    backoff: Duration,
    /// Whose turn it is among the batches of the same runs.
    order: Option<&'a RunOrder>,
}

impl<'a> Retry<'a> {
    /// Retries of a request of `batch` (its dispatch order) within `window`, and within
    /// shutdown's deadline once `stop` has one.
    pub(crate) fn new(outage: &'a Outage, batch: u64, stop: &'a Stop, window: Duration) -> Self {
        Self {
            outage,
            batch,
            stop,
            window,
            started: None,
            backoff: FIRST_BACKOFF,
            order: None,
        }
    }

    /// Sends only in turn: after the older batches holding records of the same runs.
    pub(crate) fn in_order(mut self, order: &'a RunOrder) -> Self {
        self.order = Some(order);
        self
    }

    /// Called right before each attempt is sent (after it is encoded, so encoding overlaps
    /// an older request): waits for this batch's turn. `Err` when shutdown's deadline passed
    /// first; the request then fails, counted.
    pub(crate) fn wait_turn(&self) -> Result<(), Failure> {
        let Some(order) = self.order else {
            return Ok(());
        };
        if order.wait_turn(self.batch, self.stop.deadline()) {
            return Ok(());
        }
        // The crate's own deadline, not the collector's refusal: retryable, so a spool keeps
        // the request for the next start.
        Err(Failure {
            message: "shutdown's deadline passed while an older request of the same run was \
                      in flight"
                .into(),
            error_type: ErrorType::ShutdownDeadline,
            retryable: true,
            retry_after: None,
        })
    }

    /// How long one attempt may take: the export timeout, or less when shutdown's deadline is
    /// nearer (an attempt on a silent collector then fails in time to be counted).
    pub(crate) fn attempt_timeout(&self, timeout: Duration) -> Duration {
        self.stop.deadline().map_or(timeout, |deadline| {
            let left = deadline.saturating_duration_since(Instant::now());
            timeout.min(left.max(POLL))
        })
    }

    /// After a failure: waits for the next attempt and returns `true`, or returns `false` when
    /// the failure is final (not retryable, the window is spent, or no attempt fits before
    /// shutdown's deadline).
    pub(crate) fn again(&mut self, failure: &Failure) -> bool {
        if !failure.retryable || self.stop.passed() {
            return false;
        }
        let started = *self.started.get_or_insert_with(|| {
            self.outage.lock().insert(self.batch);
            Instant::now()
        });
        let wait = self.backoff.max(failure.delay(self.window));
        let Some(until) = self.next_attempt(started, wait) else {
            return false;
        };
        // The backoff, then the turn of this batch: older ones go first.
        while Instant::now() < until || self.outage.oldest() != Some(self.batch) {
            if self.stop.passed() || started.elapsed() > self.window {
                return false;
            }
            std::thread::sleep(POLL);
        }
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        true
    }

    /// When the next attempt goes, `wait` from now: within the retry window, and cut short to
    /// fit before shutdown's deadline. `None` when it fits neither.
    fn next_attempt(&self, started: Instant, wait: Duration) -> Option<Instant> {
        let now = Instant::now();
        let mut until = now.checked_add(wait)?;
        if let Some(deadline) = self.stop.deadline() {
            let last = deadline.checked_sub(LAST_ATTEMPT_ROOM)?;
            if now >= last {
                return None;
            }
            until = until.min(last);
        }
        (until.duration_since(started) <= self.window).then_some(until)
    }
}

impl Drop for Retry<'_> {
    fn drop(&mut self) {
        if self.started.is_some() {
            self.outage.lock().remove(&self.batch);
        }
    }
}

/// Whether an OTLP/HTTP answer may succeed when sent again: throttling and gateway errors.
#[cfg(feature = "http-proto")]
pub(crate) fn retryable_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// The HTTP client's deadline for one export ran out.
#[cfg(feature = "http-proto")]
pub(crate) fn is_timeout(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("timed out") || lower.contains("timeout")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> Failure {
        Failure {
            error_type: ErrorType::Connection,
            message: "refused".into(),
            retryable: true,
            retry_after: None,
        }
    }

    #[test]
    fn a_final_failure_is_not_retried_and_a_passed_deadline_ends_the_retries() {
        let outage = Outage::default();
        let stop = Stop::default();
        let mut retry = Retry::new(&outage, 0, &stop, Duration::from_secs(60));
        let final_failure = Failure {
            error_type: ErrorType::Connection,
            message: "400".into(),
            retryable: false,
            ..refused()
        };
        assert!(!retry.again(&final_failure));
        assert!(!outage.ongoing());
        assert!(stop.request(Instant::now()));
        assert!(
            !stop.request(Instant::now() + Duration::from_secs(60)),
            "the first one stays"
        );
        assert!(!retry.again(&refused()));
    }

    #[test]
    fn during_shutdown_a_wait_is_cut_short_to_fit_before_the_deadline() {
        let outage = Outage::default();
        let stop = Stop::default();
        let mut retry = Retry::new(&outage, 0, &stop, Duration::from_secs(60));
        let started = Instant::now();
        assert!(retry.again(&refused()), "1 s");
        // The next backoff is 2 s; the deadline leaves 0.7 s: one more attempt, 0.5 s from now.
        let asked = Instant::now();
        stop.request(asked + Duration::from_millis(700));
        assert_eq!(retry.attempt_timeout(Duration::from_secs(10)).as_secs(), 0);
        assert!(retry.again(&refused()), "a last attempt fits");
        let waited = asked.elapsed();
        assert!(
            waited < Duration::from_millis(700) && started.elapsed() < Duration::from_secs(3),
            "cut short: {waited:?}"
        );
        assert!(!retry.again(&refused()), "no attempt fits any more");
        // A server's Retry-After is cut short the same way.
        let throttled = Failure {
            retry_after: Some(Duration::from_secs(30)),
            ..refused()
        };
        let (outage, stop) = (Outage::default(), Stop::default());
        stop.request(Instant::now() + Duration::from_millis(600));
        let mut retry = Retry::new(&outage, 0, &stop, Duration::from_secs(60));
        assert!(retry.again(&throttled));
    }

    #[test]
    fn a_delay_no_clock_can_hold_is_a_failed_attempt_not_a_panic() {
        let (outage, stop) = (Outage::default(), Stop::default());
        let forever = Failure {
            retry_after: Some(Duration::from_secs(u64::MAX)),
            ..refused()
        };
        assert_eq!(
            forever.delay(Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        let mut retry = Retry::new(&outage, 0, &stop, Duration::from_secs(3));
        assert!(!retry.again(&forever), "longer than the window: final");
        let mut retry = Retry::new(&outage, 0, &stop, Duration::MAX);
        assert!(!retry.again(&forever), "past any clock: final");
    }

    #[test]
    fn the_window_bounds_the_retries_and_the_outage_ends_with_them() {
        let outage = Outage::default();
        let stop = Stop::default();
        {
            let mut retry = Retry::new(&outage, 0, &stop, Duration::from_millis(2500));
            assert!(retry.again(&refused()), "1 s fits");
            assert!(outage.ongoing());
            assert!(!retry.again(&refused()), "1 s + 2 s does not");
        }
        assert!(!outage.ongoing());
        // The server's Retry-After is the least wait: 5 s do not fit a 2.5 s window.
        let throttled = Failure {
            retry_after: Some(Duration::from_secs(5)),
            ..refused()
        };
        let mut retry = Retry::new(&outage, 0, &stop, Duration::from_millis(2500));
        assert!(!retry.again(&throttled));
    }
}
