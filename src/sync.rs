//! Locks that a panic elsewhere does not poison for us. A thread that panicked while holding
//! one of the crate's locks (a user's `Debug` impl inside a callback, say) must not make every
//! later log call panic too: what these locks guard — counters, queues of batch numbers, the
//! live-run table — is consistent between statements, so the data is taken as it is. Also: a
//! panic's message, for the code that outlives a panic (the panic hook, the senders).

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Locks `mutex`, whether or not a holder panicked.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits on `condvar`, whether or not a holder panicked.
pub(crate) fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar.wait(guard).unwrap_or_else(|e| e.into_inner())
}

/// Waits on `condvar` for at most `timeout`, whether or not a holder panicked.
pub(crate) fn wait_timeout<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: Duration,
) -> MutexGuard<'a, T> {
    match condvar.wait_timeout(guard, timeout) {
        Ok((guard, _)) => guard,
        Err(poisoned) => poisoned.into_inner().0,
    }
}

/// The message a panic's payload carries (`panic!` gives a `&str` or a `String`), else `default`.
pub(crate) fn panic_message<'a>(
    payload: &'a (dyn std::any::Any + Send),
    default: &'a str,
) -> &'a str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or(default)
}
