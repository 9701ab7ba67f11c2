//! 10,000 short runs in one process: the thread count stays constant and every run's state is
//! released. (Its own test binary: it counts the process's threads.)

mod common;

use common::{watchdog, Harness};
use tracing::{info, info_span};

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// The thread count once short-lived threads are gone: over HTTP, ureq resolves a new
/// connection's host on a thread of its own that ends with the lookup (bounded by the timeout).
/// A thread per run would stay.
fn settled_thread_count(expected: usize) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let count = thread_count();
        if count <= expected || std::time::Instant::now() >= deadline {
            return count;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn ten_thousand_short_runs_keep_threads_constant_and_release_their_state() {
    watchdog("10k runs", || {
        // A queue that holds the whole burst keeps this test about threads and state, not
        // throughput.
        let harness = Harness::with(zenml_otel::OtelLogStoreConfig {
            max_queue_size: 20_000,
            ..zenml_otel::OtelLogStoreConfig::default()
        });
        harness.run(|| info!("warm up"));
        harness.handle.force_flush().unwrap();
        let threads = thread_count();
        harness.run(|| {
            for run in 0..10_000 {
                let run_span = info_span!("run", zenml.pipeline_run_id = run);
                let _r = run_span.enter();
                let step = info_span!("step", zenml.step_id = %format!("{run}-s"));
                let _s = step.enter();
                info!("short run");
            }
        });
        assert_eq!(settled_thread_count(threads), threads, "no thread per run");
        harness.handle.force_flush().unwrap();
        let stats = harness.handle.stats();
        assert_eq!(stats.exported, 10_001);
        assert_eq!(stats.live_runs, 0, "every run's state released: {stats:?}");
        assert_eq!(settled_thread_count(threads), threads);
    });
}
