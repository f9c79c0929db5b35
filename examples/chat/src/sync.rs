//! The one lock helper of the crate.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Lock `m`, tolerating poison: every critical section in this crate is one
/// map, bucket or option operation, so a panic elsewhere while holding the
/// lock still leaves valid data behind.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
