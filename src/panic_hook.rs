//! The opt-in panic hook: a panic becomes an ERROR record under the panicking thread's run and
//! step, flushed (for a bounded time) before the previous hook runs.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::panic::PanicHookInfo;
use std::time::Duration;

use crate::LogStoreHandle;

/// The panic record's target (its instrumentation scope). Its code location is the panic's,
/// not the hook's.
pub(crate) const TARGET: &str = "zenml_otel::panic";
/// Longest the hook waits for the panic record (and everything before it) to be exported.
const FLUSH_BOUND: Duration = Duration::from_secs(5);

impl LogStoreHandle {
    /// Makes every panic an ERROR record, logged where the panic happened: under the run and
    /// step of the panicking thread's current span. The record's body is `panicked at
    /// {file}:{line}:{column}: {message}`. It carries `exception.message` (the panic's
    /// message), `exception.stacktrace` when a backtrace is captured (`RUST_BACKTRACE=1`), the
    /// panic's `code.file.path`, `code.line.number` and `code.column.number`, and
    /// `thread.name`. There is no `exception.type`: a panic's payload type is not known at
    /// run time.
    ///
    /// The hook logs the record, flushes for at most 5 s, then runs the hook that was installed
    /// before (the default one prints the panic). Call it once, after the subscriber is set up.
    /// Each call chains one more hook.
    pub fn install_panic_hook(&self) {
        let handle = self.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            log_panic(info);
            // An error here is a failed export, already counted and warned about.
            let _ = handle.flush_within(FLUSH_BOUND);
            previous(info);
        }));
    }
}

fn log_panic(info: &PanicHookInfo<'_>) {
    let payload = info.payload();
    let message = crate::sync::panic_message(payload, "Box<dyn Any>");
    let location = info.location();
    let backtrace = Backtrace::capture();
    let stacktrace =
        (backtrace.status() == BacktraceStatus::Captured).then(|| backtrace.to_string());
    let thread = std::thread::current();
    let body = match location {
        Some(at) => format!("panicked at {at}: {message}"),
        None => format!("panicked: {message}"),
    };
    tracing::event!(
        target: TARGET,
        tracing::Level::ERROR,
        {
            exception.message = message,
            exception.stacktrace = stacktrace.as_deref(),
            code.file.path = location.map(|at| at.file()),
            code.line.number = location.map(|at| at.line()),
            code.column.number = location.map(|at| at.column()),
            thread.name = thread.name(),
        },
        "{body}"
    );
}
