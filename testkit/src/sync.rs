//! Poison-tolerant locking.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Lock `m` even if a thread panicked while holding it.
///
/// In a test a panic has already failed the test; the data behind the lock
/// is still what the other threads need to finish and report.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
