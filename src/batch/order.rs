//! A run's records reach the collector in the order they were emitted, across requests too.
//! Senders encode their batches concurrently, but a request goes out only once every older
//! batch that holds records of one of its runs is finished: a slow answer to one request cannot
//! let the next one of the same run overtake it. Batches of different runs never wait on each
//! other.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Identifies a run while any of its records is in flight (the address of its shared state,
/// which those records keep alive).
pub(crate) type RunKey = usize;

/// The batches handed out and not yet finished, by dispatch order, with the runs each holds.
#[derive(Debug, Default)]
pub(crate) struct RunOrder {
    open: Mutex<BTreeMap<u64, Vec<RunKey>>>,
    finished: Condvar,
}

impl RunOrder {
    /// Registers batch `seq` (dispatch order: called in increasing `seq`) and its runs.
    pub(crate) fn open(&self, seq: u64, mut runs: Vec<RunKey>) {
        runs.sort_unstable();
        runs.dedup();
        self.lock().insert(seq, runs);
    }

    /// Batch `seq` is sent or counted: the batches behind it may go.
    pub(crate) fn close(&self, seq: u64) {
        self.lock().remove(&seq);
        self.finished.notify_all();
    }

    /// Waits until no older open batch shares a run with batch `seq`. Returns `false` if
    /// `deadline` (shutdown's) passed first. Older batches never wait on newer ones, so the
    /// oldest always goes and the wait ends.
    pub(crate) fn wait_turn(&self, seq: u64, deadline: Option<Instant>) -> bool {
        let mut open = self.lock();
        while Self::behind(&open, seq) {
            open = match deadline {
                None => crate::sync::wait(&self.finished, open),
                Some(deadline) => {
                    let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                        return false;
                    };
                    crate::sync::wait_timeout(&self.finished, open, left)
                }
            };
        }
        true
    }

    fn behind(open: &BTreeMap<u64, Vec<RunKey>>, seq: u64) -> bool {
        let Some(mine) = open.get(&seq) else {
            return false;
        };
        open.range(..seq)
            .any(|(_, runs)| runs.iter().any(|run| mine.binary_search(run).is_ok()))
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Vec<RunKey>>> {
        crate::sync::lock(&self.open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_batch_waits_for_older_batches_of_its_runs_only() {
        let order = Arc::new(RunOrder::default());
        order.open(1, vec![7, 8]);
        order.open(2, vec![9]);
        order.open(3, vec![8, 8, 10]);
        assert!(order.wait_turn(1, None), "the oldest never waits");
        assert!(order.wait_turn(2, None), "no older batch holds run 9");
        let soon = Some(Instant::now() + Duration::from_millis(50));
        assert!(!order.wait_turn(3, soon), "batch 1 holds run 8 and is open");

        let went = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (order, went) = (Arc::clone(&order), Arc::clone(&went));
            std::thread::spawn(move || {
                assert!(order.wait_turn(3, None));
                went.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!went.load(Ordering::SeqCst));
        order.close(2);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!went.load(Ordering::SeqCst), "batch 2 did not hold run 8");
        order.close(1);
        waiter.join().unwrap();
        assert!(went.load(Ordering::SeqCst));
    }
}
