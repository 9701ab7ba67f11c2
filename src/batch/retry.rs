//! Outages longer than one export: a request that failed with a retryable error is sent again,
//! with capped exponential backoff, for up to `max_retry_elapsed_millis` — unless the pipeline
//! shuts down. While any request waits for its retry, the coordinator hands out no new batches,
//! so newer records stay queued behind it (under the queue's usual bounds) and a run's records
//! keep their order.

use super::order::RunOrder;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// First wait after an export failed, doubled per attempt up to [`MAX_BACKOFF`], as the Collector's
/// `retry_on_failure` does.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often a wait looks for a shutdown.
const POLL: Duration = Duration::from_millis(50);

/// Why an export failed, and whether sending it again may succeed.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) retryable: bool,
    /// The server's `Retry-After`: the next attempt waits at least this long.
    pub(crate) retry_after: Option<Duration>,
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
    /// outage was noticed must not overtake it), unless `stop` is set.
    pub(crate) fn wait_behind_older(&self, batch: u64, stop: &AtomicBool) {
        while self.oldest().is_some_and(|oldest| oldest < batch) && !stop.load(Ordering::Acquire) {
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
    stop: &'a AtomicBool,
    window: Duration,
    started: Option<Instant>,
    backoff: Duration,
    /// Whose turn it is among the batches of the same runs, and shutdown's deadline.
    order: Option<(&'a RunOrder, Option<Instant>)>,
}

impl<'a> Retry<'a> {
    /// Retries of a request of `batch` (its dispatch order) within `window`, until `stop` is set.
    pub(crate) fn new(
        outage: &'a Outage,
        batch: u64,
        stop: &'a AtomicBool,
        window: Duration,
    ) -> Self {
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
    pub(crate) fn in_order(mut self, order: &'a RunOrder, deadline: Option<Instant>) -> Self {
        self.order = Some((order, deadline));
        self
    }

    /// Called right before each attempt is sent (after it is encoded, so encoding overlaps
    /// an older request): waits for this batch's turn. `Err` when shutdown's deadline passed
    /// first; the request then fails, counted.
    pub(crate) fn wait_turn(&self) -> Result<(), Failure> {
        let Some((order, deadline)) = self.order else {
            return Ok(());
        };
        if order.wait_turn(self.batch, deadline) {
            return Ok(());
        }
        Err(Failure {
            message: "shutdown's deadline passed while an older request of the same run was \
                      in flight"
                .into(),
            retryable: false,
            retry_after: None,
        })
    }

    /// After a failure: waits for the next attempt and returns `true`, or returns `false` when
    /// the failure is final (not retryable, the window is spent, or the pipeline stops).
    pub(crate) fn again(&mut self, failure: &Failure) -> bool {
        if !failure.retryable || self.stopped() {
            return false;
        }
        let started = *self.started.get_or_insert_with(|| {
            self.outage.lock().insert(self.batch);
            Instant::now()
        });
        let wait = self.backoff.max(failure.retry_after.unwrap_or_default());
        if started.elapsed() + wait > self.window {
            return false;
        }
        // The backoff, then the turn of this batch: older ones go first.
        let until = Instant::now() + wait;
        while Instant::now() < until || self.outage.oldest() != Some(self.batch) {
            if self.stopped() || started.elapsed() > self.window {
                return false;
            }
            std::thread::sleep(POLL);
        }
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        true
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
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

    #[test]
    fn a_final_failure_is_not_retried_and_stop_ends_the_wait() {
        let outage = Outage::default();
        let stop = AtomicBool::new(false);
        let mut retry = Retry::new(&outage, 0, &stop, Duration::from_secs(60));
        let final_failure = Failure {
            message: "400".into(),
            retryable: false,
            retry_after: None,
        };
        assert!(!retry.again(&final_failure));
        assert!(!outage.ongoing());
        stop.store(true, Ordering::Release);
        let retryable = Failure {
            message: "refused".into(),
            retryable: true,
            retry_after: None,
        };
        assert!(!retry.again(&retryable));
    }

    #[test]
    fn the_window_bounds_the_retries_and_the_outage_ends_with_them() {
        let outage = Outage::default();
        let stop = AtomicBool::new(false);
        let failure = Failure {
            message: "refused".into(),
            retryable: true,
            retry_after: None,
        };
        {
            let mut retry = Retry::new(&outage, 0, &stop, Duration::from_millis(2500));
            assert!(retry.again(&failure), "1 s fits");
            assert!(outage.ongoing());
            assert!(!retry.again(&failure), "1 s + 2 s does not");
        }
        assert!(!outage.ongoing());
        // The server's Retry-After is the least wait: 5 s do not fit a 2.5 s window.
        let throttled = Failure {
            retry_after: Some(Duration::from_secs(5)),
            ..failure
        };
        let mut retry = Retry::new(&outage, 0, &stop, Duration::from_millis(2500));
        assert!(!retry.again(&throttled));
    }
}
