//! The process environment of a test binary: one lock for the tests that set variables, and
//! the variables each may set, cleared before it holds the lock and after it lets go.

use std::sync::{Mutex, MutexGuard};

/// Holds the environment lock with exactly `vars` set among `known`; clears `known` again when
/// dropped (before the lock goes). A variable outside `known` is refused: nothing would clear it
/// for the next test.
pub struct Env {
    known: Vec<&'static str>,
    _lock: MutexGuard<'static, ()>,
}

impl Env {
    pub fn with(known: impl IntoIterator<Item = &'static str>, vars: &[(&str, &str)]) -> Self {
        static LOCK: Mutex<()> = Mutex::new(());
        let lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let env = Self {
            known: known.into_iter().collect(),
            _lock: lock,
        };
        env.clear();
        for (name, value) in vars {
            assert!(
                env.known.contains(name),
                "{name} is not among the variables this test binary clears"
            );
            std::env::set_var(name, value);
        }
        env
    }

    fn clear(&self) {
        for name in &self.known {
            std::env::remove_var(name);
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.clear();
    }
}
