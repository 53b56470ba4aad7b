//! Locking shared state. A thread that panicked while holding a lock
//! leaves the data as it was at the panic; the host takes the lock over
//! rather than propagate the panic to every later caller.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, taking over a poisoned lock.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
